"""The model as ONNX with a KV cache, for onnxruntime (onnxruntime-web in the static Space's page).

One graph serves the prompt and every new token: inputs `input_ids` (B, T) and the cache of the
T_past earlier positions (T_past 0 for the prompt); outputs `logits` (B, 1, vocab_size) for the
last position and the cache. Positions must stay below block_size. Two ways to hand the cache over
(CACHES), one per backend:
- "full" (WebGPU): Hugging Face's names and layout: `past_key_values.{i}.key` / `.value` in
  (B, n_head, T_past, head_size), `present.{i}.key` / `.value` out (T_past + T). The page keeps
  the outputs in GPU buffers and feeds them back.
- "append" (WebAssembly): `past.{i}.key` / `.value` in as (B, T_past, n_embd), time-major, and only
  the T new positions out, `new.{i}.key` / `.value` (B, T, n_embd). onnxruntime-web copies every
  input into WebAssembly memory and every output out of it on each run: with "full", each token
  copied the whole cache in, out again and into new arrays; time-major, the page appends the new
  positions to buffers it allocated once, and only onnxruntime-web's copy in is left
  (scripts/measure_static_space.py measures both).

The dtypes, each for the backend that runs it best (helpers.hf.static_space chooses):
- int8: onnxruntime's dynamic quantization of the weights (activations quantized on the fly), for
  WebAssembly. The output head, tied to the token embedding, stays the embedding's int8 behind a
  DequantizeLinear: the page has onnxruntime fold that into a float32 head once, at load
  (session.disable_quant_qdq), rather than every token. scripts/measure_static_space.py compares
  this with a head quantized as a matrix of its own (untie; 39 MB more to download, no faster).
- float16: weights, activations and the cache in float16 (logits float32), for WebGPU with the
  shader-f16 feature; half of float32's bytes.
- float32: the reference, whose greedy text is PyTorch's.
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

ONNX_DTYPES = ("int8", "float16", "float32")
CACHES = {"full": ("past_key_values", "present"), "append": ("past", "new")}  # the cache's input and output names


def cache_names(n_layer: int, prefix: str) -> list[str]:
    """The names of the cache tensors: PREFIX.{i}.key, PREFIX.{i}.value for each layer."""
    return [f"{prefix}.{i}.{part}" for i in range(n_layer) for part in ("key", "value")]


class CachedLM(nn.Module):
    """GPT's cached forward with flat tensors in and out (what ONNX names), and only the last position's logits.

    The head runs on the last position alone, as GPT.generate_stream does: a 1,024-token prompt (or
    the rebuild after the context slides) would otherwise cost 1,024 rows of 50,257 logits.
    untie: the head as a buffer of its own, transposed (n_embd, vocab_size), instead of the embedding.
    cache: "full" or "append" (CACHES).
    """

    def __init__(self, model: GPT, untie: bool = False, cache: str = "full"):
        super().__init__()
        self.model, self.append = model, cache == "append"
        self.register_buffer("head", model.lm_head.weight.detach().t().contiguous() if untie else None)

    def forward(self, input_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        B, T = input_ids.shape
        C, n_head = self.model.config.n_embd, self.model.config.n_head
        if self.append:  # (B, T_past, C) -> (B, n_head, T_past, head_size)
            past = tuple(t.view(B, t.size(1), n_head, C // n_head).transpose(1, 2) for t in past)
        x, present = self.model._hidden(input_ids, list(zip(past[::2], past[1::2])))
        x = x[:, -1:, :]
        logits = x @ self.head if self.head is not None else self.model.lm_head(x)
        cache = [t for kv in present for t in kv]
        if self.append:  # the T new positions alone, back to (B, T, C)
            cache = [t[:, :, -T:, :].transpose(1, 2).reshape(B, T, C) for t in cache]
        return (logits, *cache)


def empty_cache(model: GPT, batch: int = 1, dtype: torch.dtype = torch.float32, cache: str = "full") -> list:
    """The cache before the first token, as the cache layout takes it: per layer, keys and values of length 0."""
    c = model.config
    shape = (batch, 0, c.n_embd) if cache == "append" else (batch, c.n_head, 0, c.n_embd // c.n_head)
    return [torch.zeros(*shape, dtype=dtype) for _ in range(2 * c.n_layer)]


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


def export_float32(model: GPT, path: Path, untie: bool = False, cache: str = "full") -> Path:
    """Write model (float32, eval) to path as float32 ONNX with a KV cache handed over as cache says (CACHES)."""
    n_layer, block = model.config.n_layer, model.config.block_size
    past_in, past_out = (cache_names(n_layer, prefix) for prefix in CACHES[cache])
    # The batch, the prompt's length and the cache's are free; an example with each above 1 traces the general
    # case (torch.export takes a size of 0 or 1 in the example for a constant).
    example_ids = torch.zeros(2, 2, dtype=torch.long)
    time_axis = 1 if cache == "append" else 2
    example_past = [
        t.new_zeros(t.shape[:time_axis] + (3,) + t.shape[time_axis + 1 :]) for t in empty_cache(model, 2, cache=cache)
    ]
    batch, seq, past_seq = (
        torch.export.Dim("batch", max=64),
        torch.export.Dim("seq", max=block),
        torch.export.Dim("past", max=block),
    )
    shapes = ({0: batch, 1: seq}, tuple({0: batch, time_axis: past_seq} for _ in past_in))  # *past: one argument
    with torch.no_grad():
        program = torch.onnx.export(
            CachedLM(model, untie, cache),
            (example_ids, *example_past),
            dynamo=True,
            input_names=["input_ids", *past_in],
            output_names=["logits", *past_out],
            dynamic_shapes=shapes,
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)
    return path


def export_onnx(model: GPT, path: str | Path, dtype: str = "int8", cache: str = "full") -> Path:
    """Write model to path as ONNX with a KV cache in dtype (int8, float16 or float32), handed over as cache says."""
    if dtype not in ONNX_DTYPES:
        raise ValueError(f"ONNX dtype must be one of {', '.join(ONNX_DTYPES)}")
    if cache not in CACHES:
        raise ValueError(f"the ONNX cache must be one of {', '.join(CACHES)}")
    path = Path(path)
    model = model.float().eval()
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp, quiet():
        raw = export_float32(model, Path(tmp) / "model.onnx", cache=cache)
        if dtype == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(raw, path, weight_type=QuantType.QInt8, per_channel=True)
        elif dtype == "float16":
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16

            # Logits stay float32: the page samples from them on the CPU, and float16 would round them.
            onnx.save(convert_float_to_float16(onnx.load(raw), keep_io_types=["logits"]), path)
        else:
            raw.replace(path)
    return path
