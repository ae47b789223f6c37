"""The .safetensors encoding of a checkpoint dict: plain tensors and JSON, nothing that runs code on load.

The file holds the model's tensors, with tensors that share memory (the tied embedding) stored
once: safetensors refuses shared tensors, so `lm_head.weight` is re-tied to
`transformer.wte.weight` on load. The header's metadata holds every other key of the checkpoint
(`step`, `loss`, `config`, `model_args`, ...) as a JSON string. helpers.checkpoints.storage reads and
writes files through this module; nothing here knows what a checkpoint must hold.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers.checkpoints.format import tensor_identity

SUFFIX = ".safetensors"
TIED_KEY = "tied_weights"  # metadata: {alias: stored key} for tensors stored once


def untie(state_dict: dict) -> tuple[dict, dict]:
    """The state dict with each tensor that shares memory with an earlier one left out, and {alias: kept key}."""
    kept: dict[tuple, str] = {}
    tensors, tied = {}, {}
    for key, t in state_dict.items():
        identity = tensor_identity(t)
        if identity in kept:
            tied[key] = kept[identity]
        else:
            kept[identity] = key
            tensors[key] = t.contiguous()
    return tensors, tied


def encode(state_dict: dict, keys: dict) -> bytes:
    """A .safetensors file's bytes: state_dict's tensors (shared ones once) and keys as JSON metadata."""
    from safetensors.torch import save

    tensors, tied = untie(state_dict)
    metadata = {TIED_KEY: json.dumps(tied)}
    for key, value in keys.items():
        try:
            metadata[key] = json.dumps(value)
        except TypeError:
            raise ValueError(
                f"checkpoint key {key!r} holds a {type(value).__name__}, which JSON cannot store"
            ) from None
    return save(tensors, metadata=metadata)


def decode(path: str | Path) -> dict:
    """The dict a .safetensors file holds, tensors under model_state_dict (re-tied); ValueError says what is wrong."""
    from safetensors import SafetensorError, safe_open

    from helpers.errors import describe

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as e:  # a bad header, a truncated file
        raise ValueError(f"not a safetensors file, or damaged ({describe(e)})") from None
    ckpt = {}
    for key, text in metadata.items():
        try:
            ckpt[key] = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"metadata {key!r} is not JSON (not a checkpoint written by this project?)") from None
    for alias, source in ckpt.pop(TIED_KEY, {}).items():
        if source not in tensors:
            raise ValueError(f"{alias} is tied to {source}, which the file lacks")
        tensors[alias] = tensors[source]  # the same tensor again, as the model ties them
    ckpt["model_state_dict"] = tensors
    return ckpt
