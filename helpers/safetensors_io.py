"""Deployment checkpoints as `.safetensors`: plain tensors and JSON, nothing that runs code on load.

The file holds the model's tensors, with the tied embedding stored once (safetensors refuses
tensors that share memory; `lm_head.weight` is re-tied to `transformer.wte.weight` on load), and
its header's metadata holds every other key of the deployment checkpoint (`step`, `loss`,
`config`, `model_args`, ...) as a JSON string. Loading gives back the same dict as
`helpers.checkpoint.load_checkpoint` gives for a `.pt` deployment checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path


from helpers.checkpoint import (
    CheckpointError,
    check_checkpoint,
    clean_state_dict,
    load_model,
    model_config_of,
    model_with_weights,
    tensor_identity,
    to_deployment,
)
from helpers.fileio import atomic_write_bytes
from helpers.model import GPT

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


def save_safetensors(ckpt: dict, path: str | Path) -> Path:
    """Write ckpt's deployment form (no optimizer state) to a .safetensors file, atomically."""
    from safetensors.torch import save

    deploy = to_deployment(ckpt, ckpt.get("dtype", "float32"))
    tensors, tied = untie(clean_state_dict(deploy.pop("model_state_dict")))
    metadata = {TIED_KEY: json.dumps(tied)}
    for key, value in deploy.items():
        try:
            metadata[key] = json.dumps(value)
        except TypeError:
            raise ValueError(f"checkpoint key {key!r} holds a {type(value).__name__}, which JSON cannot store") from None
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_safetensors(path: str | Path) -> dict:
    """Read and check a .safetensors deployment checkpoint; any failure is a CheckpointError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "file is empty")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as e:  # safetensors reports a bad header or a truncated file this way
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(path, f"not a safetensors file, or damaged ({type(e).__name__}: {first})") from None
    ckpt = {}
    for key, text in metadata.items():
        try:
            ckpt[key] = json.loads(text)
        except json.JSONDecodeError:
            raise CheckpointError(path, f"metadata {key!r} is not JSON (not a checkpoint written by save_safetensors?)") from None
    tied = ckpt.pop(TIED_KEY, {})
    for alias, source in tied.items():
        if source not in tensors:
            raise CheckpointError(path, f"{alias} is tied to {source}, which the file lacks")
        tensors[alias] = tensors[source]  # the same tensor again, as the model ties them
    ckpt["model_state_dict"] = clean_state_dict(tensors)
    return check_checkpoint(path, ckpt)


def load_safetensors_model(path: str | Path, device: str = "cpu") -> tuple[GPT, dict]:
    """A ready model in eval mode from a .safetensors deployment checkpoint (half precision too)."""
    ckpt = load_safetensors(path)
    state = {k: v.float() for k, v in ckpt["model_state_dict"].items()}  # half precision too
    return model_with_weights(model_config_of(path, ckpt), state, path).to(device).eval(), ckpt


def load_any_model(path: str | Path, device: str = "cpu") -> tuple[GPT, dict]:
    """load_model for .pt checkpoints (full or deployment), load_safetensors_model for .safetensors."""
    if Path(path).suffix == SUFFIX:
        return load_safetensors_model(path, device)
    return load_model(path, device)
