"""Our GPT and transformers' GPT-2: the same network, weights renamed and transposed, configs mapped.

Transformers' GPT-2 uses `Conv1D` layers, which store their weight as (in, out), so the c_attn,
c_proj and c_fc weights are the transposes of our `nn.Linear` ones. Nothing here needs
transformers itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from helpers.checkpoints.format import MASK_BUFFER_SUFFIXES
from helpers.errors import CheckpointError
from helpers.hf.tokenizer_files import EOT_ID
from helpers.model import GPT, GPTConfig

# Linear weights that transformers' GPT-2 keeps transposed (its Conv1D stores (in, out)).
TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# What transformers' GPT2Config must say for its network to be ours.
SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both are GELU's tanh approximation


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under GPT2LMHeadModel's names, Conv1D weights transposed."""
    out = {}
    for key, t in model.state_dict().items():
        if key == "lm_head.weight":
            continue  # tied to wte; transformers re-ties it (tie_word_embeddings)
        if key.endswith(TRANSPOSED):
            t = t.t()
        out[key] = t.detach().cpu().contiguous()  # safetensors stores contiguous tensors only
    return out


def from_hf_state_dict(
    hf_state: dict[str, torch.Tensor], config: GPTConfig, where: str | Path
) -> dict[str, torch.Tensor]:
    """A transformers GPT-2 state dict as ours: transposed back, wpe cropped to block_size."""
    state = {}
    for key, t in hf_state.items():
        if key.endswith(MASK_BUFFER_SUFFIXES):
            continue  # causal-mask buffers that older transformers versions saved; ours has none
        if key != "lm_head.weight" and not key.startswith("transformer."):
            key = "transformer." + key  # OpenAI's original files name the base model's keys bare
        if key.endswith(TRANSPOSED):
            t = t.t()
        state[key] = t.float().contiguous()
    wte = state.get("transformer.wte.weight")
    if wte is None or wte.shape[0] != config.vocab_size:
        raise CheckpointError(where, f"no token embedding of {config.vocab_size} rows (transformer.wte.weight)")
    head = state.pop("lm_head.weight", None)
    if head is not None and not torch.equal(head.float(), wte):
        raise CheckpointError(
            where, "lm_head.weight differs from the token embedding; only tied GPT-2 models can be imported"
        )
    state["lm_head.weight"] = wte
    if "transformer.wpe.weight" in state:
        state["transformer.wpe.weight"] = state["transformer.wpe.weight"][: config.block_size].contiguous()
    return state


def hf_config(config: GPTConfig, dtype: str = "float32") -> dict:
    """transformers' GPT2Config, as the config.json that describes our architecture."""
    if not config.bias:
        raise ValueError("a model without biases (bias=False) has no transformers GPT-2 equivalent")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,  # 4 * n_embd
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": 1e-5,  # nn.LayerNorm's default
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": EOT_ID,
        "eos_token_id": EOT_ID,
        "torch_dtype": dtype,  # transformers 4.x's name
        "dtype": dtype,  # transformers 5.x's name
    }


def gpt_config_from_hf(hf: dict, where: str | Path, block_size: int | None = None, dropout: float = 0.0) -> GPTConfig:
    """Our GPTConfig for a transformers GPT-2 config.json; a CheckpointError if the network differs."""

    def differs(key: str, ok: Callable[[object], bool], default: object) -> None:
        value = hf.get(key, default)
        if not ok(value):
            raise CheckpointError(where, f"{key}={value!r} is not supported (this GPT is OpenAI's GPT-2 design)")

    differs("model_type", lambda v: v == "gpt2", None)
    differs("activation_function", lambda v: v in SUPPORTED_ACTIVATIONS, "gelu_new")
    differs("n_inner", lambda v: v is None or v == 4 * hf.get("n_embd", 768), None)
    differs("layer_norm_epsilon", lambda v: v == 1e-5, 1e-5)
    differs("scale_attn_weights", lambda v: v is True, True)
    differs("scale_attn_by_inverse_layer_idx", lambda v: v is False, False)
    differs("add_cross_attention", lambda v: v is False, False)
    differs("tie_word_embeddings", lambda v: v is True, True)
    n_positions = hf.get("n_positions", 1024)
    block_size = block_size or n_positions
    if block_size > n_positions:
        raise CheckpointError(where, f"block_size {block_size} is longer than the model's {n_positions} positions")
    try:
        return GPTConfig(
            block_size=block_size,
            vocab_size=hf["vocab_size"],
            n_layer=hf["n_layer"],
            n_head=hf["n_head"],
            n_embd=hf["n_embd"],
            dropout=dropout,
            bias=True,
        )
    except KeyError as e:
        raise CheckpointError(where, f"config.json lacks {e.args[0]}") from None
