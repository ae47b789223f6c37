"""What a checkpoint holds: its two kinds, their keys, how they are made and checked, and stripping one to the other.

Two kinds (docs/checkpoints.md), with the five keys the project started from (`step`,
`model_state_dict`, `optimizer_state_dict`, `loss`, `config`) and a few of our own beside them:

- full (`model_step_{step}.pt`, `model_best_full.pt`, `model_final_full.pt`): everything needed
  to resume exactly: the weights, every training piece's state and the run state;
- deployment (`model_final.pt`, `model_best.pt`): the weights and the facts of how they were made,
  about a third of the size.

Nothing here reads or writes a file: that is helpers.checkpoints.storage.
"""

from __future__ import annotations

from pathlib import Path

import torch

from helpers.errors import CheckpointError
from helpers.model import ARCHITECTURE, GPTConfig
from helpers.training.run_state import RESUME_ONLY

FORMAT = "gpt2-124m-colab"  # "format" in every file this project writes
FORMAT_VERSION = 1
FULL = "full"
DEPLOYMENT = "deployment"
# nanoGPT's ckpt.pt (github.com/karpathy/nanoGPT, train.py), read as its weights: its optimizer
# state has nanoGPT's two parameter groups (decay, no decay), which this project's one group cannot
# take, so it never resumes here. Its "format" while in memory; stripped, it is ours.
NANOGPT = "nanoGPT"
WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # added by torch.compile and DistributedDataParallel
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Keys each kind must have (docs/checkpoints.md). Files of this project also carry `model_args`;
# files with only the five original keys describe the model in `config` (GPTConfig's fields).
REQUIRED = {
    FULL: ("step", "model_state_dict", "optimizer_state_dict", "loss", "config"),
    DEPLOYMENT: ("step", "model_state_dict", "loss", "config"),
    NANOGPT: ("step", "model_state_dict", "loss", "config"),
}
# What a checkpoint of each kind is, where another kind was asked for.
WRONG_KIND = {
    FULL: "is a full checkpoint (it holds optimizer_state_dict)",
    DEPLOYMENT: "is a deployment checkpoint (no optimizer_state_dict)",
    NANOGPT: (
        "is nanoGPT's ckpt.pt, whose optimizer state (two parameter groups) this project cannot resume; "
        "strip it to its weights with python -m helpers.create_deployment_checkpoint"
    ),
}
MODEL = "model_state_dict"  # the one piece a deployment file keeps
# Causal-mask buffers that some GPT-2 implementations keep in their state dict; ours has none.
MASK_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def training_only(key: str) -> bool:
    """Whether a full checkpoint's key is training state, which deployment files drop.

    That is every piece's state but the model's (`optimizer_state_dict`, `scaler_state_dict`,
    `sampler_state`, `rng_state`, and any piece registered later under such a name) and the run
    state's RESUME fields (helpers.training.run_state).
    """
    return key in RESUME_ONLY or (key != MODEL and key.endswith(("_state_dict", "_state")))


def tensor_identity(t: torch.Tensor) -> tuple:
    """What makes two tensors the same memory: storage, offset, shape, strides and dtype (tied weights share it)."""
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def clean_state_dict(state_dict: dict) -> dict:
    """The state dict without torch.compile's `_orig_mod.` and DDP's `module.` prefixes, or causal-mask buffers."""
    cleaned = {}
    for key, value in state_dict.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        if not key.endswith(MASK_BUFFER_SUFFIXES):
            cleaned[key] = value
    return cleaned


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain GPT inside torch.compile and DistributedDataParallel wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def make_checkpoint(
    kind: str,
    *,
    step: int,
    model: torch.nn.Module,
    loss: float,
    config: dict,
    optimizer: torch.optim.Optimizer | None = None,
    **extra: object,
) -> dict:
    """A checkpoint dict of the given kind; extra keys (val_loss, rng_state, ...) go beside."""
    plain = unwrap_model(model)
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "step": int(step),
        "model_state_dict": clean_state_dict(plain.state_dict()),
        "loss": float(loss),
        "config": dict(config),
        "model_args": plain.config.to_dict(),
    }
    if optimizer is not None:
        ckpt["optimizer_state_dict"] = optimizer.state_dict()
    ckpt.update(extra)
    if kind == FULL and "optimizer_state_dict" not in ckpt:
        raise ValueError("a full checkpoint needs the optimizer's state")
    return ckpt


def checkpoint_kind(ckpt: dict) -> str:
    """'nanoGPT' for its ckpt.pt, else the kind the file says, else 'full' if it can resume, else 'deployment'."""
    if ckpt.get("format") == NANOGPT:
        return NANOGPT
    declared = ckpt.get("kind")  # files with only the five original keys say none (docs/checkpoints.md)
    return declared if isinstance(declared, str) else FULL if "optimizer_state_dict" in ckpt else DEPLOYMENT


def check_checkpoint(path: str | Path, ckpt: dict, kind: str | tuple[str, ...] | None = None) -> dict:
    """Raise CheckpointError unless ckpt is a well-formed checkpoint (of the given kind, or one of the given kinds)."""
    if ckpt.get("format", FORMAT) not in (FORMAT, NANOGPT):
        raise CheckpointError(
            path, f"is in another program's format ({ckpt['format']!r}), not a checkpoint of this project"
        )
    actual = checkpoint_kind(ckpt)
    if actual not in REQUIRED:
        raise CheckpointError(path, f"says it is a {actual!r} checkpoint; this code knows {', '.join(REQUIRED)}")
    if actual == DEPLOYMENT and "optimizer_state_dict" in ckpt:
        raise CheckpointError(path, "says it is a deployment checkpoint, but holds optimizer_state_dict")
    if kind and actual not in ((kind,) if isinstance(kind, str) else kind):
        raise CheckpointError(path, f"{WRONG_KIND[actual]}; a full checkpoint is needed here")
    missing = [k for k in REQUIRED[actual] if k not in ckpt]
    if missing:
        raise CheckpointError(path, f"missing key(s): {', '.join(missing)}")
    version = ckpt.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(path, f"format version {version!r} is newer than this code reads ({FORMAT_VERSION})")
    if not isinstance(ckpt["model_state_dict"], dict) or not ckpt["model_state_dict"]:
        raise CheckpointError(path, "model_state_dict is empty or not a dict")
    return ckpt


def model_config_of(path: str | Path, ckpt: dict) -> GPTConfig:
    """The GPTConfig a checkpoint was made with: its model_args, else the GPTConfig fields of its config."""
    if "model_args" in ckpt:
        args, where = ckpt["model_args"], "model_args"
    else:
        config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
        args, where = {k: v for k, v in config.items() if k in GPTConfig.__dataclass_fields__}, "config"
        if "n_layer" not in args:
            raise CheckpointError(path, "has no model_args, and its config does not describe a GPT (no n_layer)")
    try:
        config = GPTConfig(**args)
    except TypeError as e:
        raise CheckpointError(path, f"{where} do not describe a GPT ({e})") from None
    sizes = (config.n_layer, config.n_head, config.n_embd, config.block_size, config.vocab_size)
    if not all(isinstance(n, int) and n > 0 for n in sizes) or config.n_embd % config.n_head:
        raise CheckpointError(path, f"{where} do not describe a GPT (sizes {sizes}; n_embd must divide by n_head)")
    return config


def check_architecture(path: str | Path, ckpt: dict, expected: GPTConfig) -> None:
    """Raise CheckpointError if the checkpoint's model is not the expected architecture."""
    found = model_config_of(path, ckpt)
    diffs = [
        f"{f} {getattr(found, f)} (expected {getattr(expected, f)})"
        for f in ARCHITECTURE
        if getattr(found, f) != getattr(expected, f)
    ]
    if diffs:
        raise CheckpointError(path, f"is a different model size: {', '.join(diffs)}")


def convert_state_dict(state_dict: dict, dtype: torch.dtype) -> dict:
    """Floating tensors cast to dtype; tensors that shared storage (the tied embedding) still do."""
    converted: dict[tuple, torch.Tensor] = {}
    out = {}
    for key, t in state_dict.items():
        if not t.is_floating_point() or t.dtype == dtype:
            out[key] = t
            continue
        identity = tensor_identity(t)
        if identity not in converted:
            converted[identity] = t.to(dtype)
        out[key] = converted[identity]
    return out


def to_deployment(ckpt: dict, dtype: str = "float32") -> dict:
    """The deployment form of a full checkpoint: all but its training-only keys (the weights, how they were made)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    deploy = {k: v for k, v in ckpt.items() if not training_only(k)}
    deploy.update(format=FORMAT, format_version=FORMAT_VERSION, kind=DEPLOYMENT)  # nanoGPT's, stripped, is ours
    deploy["dtype"] = dtype
    deploy["model_state_dict"] = convert_state_dict(ckpt["model_state_dict"], DTYPES[dtype])
    return deploy
