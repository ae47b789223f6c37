"""The model as ONNX with a KV cache, for onnxruntime (onnxruntime-web in the static Space's page).

One graph serves the prompt and every new token: inputs `input_ids` (B, T) and, per layer i,
`past_key_values.{i}.key` / `.value` (B, n_head, T_past, head_size; T_past 0 for the prompt);
outputs `logits` (B, 1, vocab_size) for the last position and `present.{i}.key` / `.value`
(T_past + T), Hugging Face's names. Positions must stay below block_size. int8 is onnxruntime's
dynamic quantization of the weights (activations quantized on the fly), about a quarter the size.
onnx, onnxscript (torch.onnx's exporter) and onnxruntime are needed here only (helpers.hf.static_space checks).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn

from helpers.model import GPT

ONNX_DTYPES = ("int8", "float32")


def cache_names(n_layer: int, prefix: str) -> list[str]:
    """Hugging Face's names of the cache tensors: PREFIX.{i}.key, PREFIX.{i}.value for each layer."""
    return [f"{prefix}.{i}.{part}" for i in range(n_layer) for part in ("key", "value")]


class CachedLM(nn.Module):
    """GPT.forward_cached with flat tensors in and out (what ONNX names), and only the last position's logits."""

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, present = self.model.forward_cached(input_ids, list(zip(past[::2], past[1::2])))
        return (logits[:, -1:, :], *[t for kv in present for t in kv])


def empty_cache(model: GPT, batch: int = 1) -> list[torch.Tensor]:
    """The cache before the first token: per layer, keys and values of length 0."""
    c = model.config
    return [torch.zeros(batch, c.n_head, 0, c.n_embd // c.n_head) for _ in range(2 * c.n_layer)]


@contextmanager
def quiet() -> Iterator[None]:
    """No warnings and no log lines below ERROR inside: the exporter's (e.g. "torchvision is not installed",
    axis names merged) and the quantizer's advice to pre-process concern neither this model nor the user."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def export_onnx(model: GPT, path: str | Path, dtype: str = "int8") -> Path:
    """Write model (float32, eval) to path as ONNX with a KV cache, int8-quantized unless dtype is float32."""
    if dtype not in ONNX_DTYPES:
        raise ValueError(f"ONNX dtype must be one of {', '.join(ONNX_DTYPES)}")
    path = Path(path)
    model = model.float().eval()
    n_layer, block = model.config.n_layer, model.config.block_size
    past_in, past_out = cache_names(n_layer, "past_key_values"), cache_names(n_layer, "present")
    # The prompt's length and the cache's are free; an example with both non-zero traces the general case.
    example_ids = torch.zeros(1, 2, dtype=torch.long)
    example_past = [t.new_zeros(1, t.size(1), 3, t.size(3)) for t in empty_cache(model)]
    batch, seq, past_seq = (
        torch.export.Dim("batch", max=64),
        torch.export.Dim("seq", max=block),
        torch.export.Dim("past", max=block),
    )
    shapes = ({0: batch, 1: seq}, tuple({0: batch, 2: past_seq} for _ in past_in))  # *past is one argument
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp, quiet():
        raw = Path(tmp) / "model.onnx"
        with torch.no_grad():
            program = torch.onnx.export(
                CachedLM(model),
                (example_ids, *example_past),
                dynamo=True,
                input_names=["input_ids", *past_in],
                output_names=["logits", *past_out],
                dynamic_shapes=shapes,
                optimize=True,
                verbose=False,
            )
        program.save(str(raw), external_data=False)
        if dtype == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(raw, path, weight_type=QuantType.QInt8, per_channel=True)
        else:
            raw.replace(path)
    return path
