"""Checkpoint files: a checkpoint dict written to and read from disk, and a model made from one.

Two encodings, chosen by the file's suffix, so callers never choose: `.pt` (torch.save) and, for
deployment checkpoints, `.safetensors` (helpers.checkpoints.safetensors_io). Every `.pt` file this
project writes holds only tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(path, weights_only=True)`, and every write is atomic (helpers.fileio). Every read is
weights-only: a file that would run code is refused, never run. nanoGPT's `ckpt.pt` is read too,
as its weights. Any file that cannot be used is one CheckpointError naming it.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from helpers.checkpoints import safetensors_io
from helpers.checkpoints.format import (
    FORMAT_VERSION,
    FULL,
    NANOGPT,
    check_architecture,
    check_checkpoint,
    clean_state_dict,
    model_config_of,
    to_deployment,
    unwrap_model,
)
from helpers.errors import CheckpointError, describe
from helpers.fileio import atomic_torch_save, atomic_write_bytes
from helpers.model import GPT, GPTConfig

NANOGPT_KEYS = ("model", "model_args", "iter_num")  # what tells nanoGPT's ckpt.pt (train.py) apart


def save_checkpoint(ckpt: dict, path: str | Path) -> Path:
    """Write a checkpoint dict atomically: .safetensors as its deployment form, any other name with torch.save."""
    if Path(path).suffix != safetensors_io.SUFFIX:
        return atomic_torch_save(ckpt, path)
    deploy = to_deployment(ckpt, ckpt.get("dtype", "float32"))
    state = clean_state_dict(deploy.pop("model_state_dict"))
    return atomic_write_bytes(path, safetensors_io.encode(state, deploy))


def _refused_object(error: pickle.UnpicklingError) -> str:
    """What torch's weights-only unpickler refused, without its advice to load the file with weights_only=False.

    That advice is the one thing never to do with a file that would run code when loaded.
    """
    call = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    if call:
        return f"it would call {call[1]}"
    other = re.search(r"WeightsUnpickler error: ([^\n.]+)", str(error))
    return other[1].strip() if other else "not loaded"


def _torch_load(path: Path, mmap: bool) -> object:
    """torch.load(weights_only=True) on the CPU; any failure is a CheckpointError."""
    if not zipfile.is_zipfile(path):
        # torch.save writes a zip archive; a truncated one loses its directory at the end.
        raise CheckpointError(path, "not a torch checkpoint, or truncated (no complete zip archive)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise CheckpointError(path, f"refused: holds objects that are not plain data ({_refused_object(e)})") from None
    except Exception as e:  # zip, storage and EOF errors from a damaged file
        raise CheckpointError(path, f"damaged, cannot be read ({describe(e)})") from None


def read_checkpoint(path: str | Path, mmap: bool = True) -> dict:
    """The dict in a .pt (memory-mapped) or .safetensors file, nanoGPT's converted; any failure is a CheckpointError."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(path, "is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "file is empty")
    if path.suffix == safetensors_io.SUFFIX:
        try:
            return safetensors_io.decode(path)
        except ValueError as e:
            raise CheckpointError(path, str(e)) from None
    ckpt = _torch_load(path, mmap)
    if not isinstance(ckpt, dict):
        raise CheckpointError(path, f"holds a {type(ckpt).__name__}, not a checkpoint dict")
    return from_nanogpt(ckpt) if is_nanogpt(ckpt) else ckpt


def is_nanogpt(ckpt: dict) -> bool:
    """Whether ckpt has nanoGPT's layout (model, optimizer, model_args, iter_num, best_val_loss, config)."""
    return "model_state_dict" not in ckpt and all(k in ckpt for k in NANOGPT_KEYS)


def from_nanogpt(ckpt: dict) -> dict:
    """nanoGPT's ckpt.pt in this project's keys, without its optimizer state; loss and val_loss: its best_val_loss."""
    best = ckpt.get("best_val_loss")  # nanoGPT stores a 0-d tensor; its only loss
    best = float(best) if isinstance(best, (int, float, torch.Tensor)) else float("nan")
    args = ckpt["model_args"] if isinstance(ckpt["model_args"], dict) else {}
    args = {k: v for k, v in args.items() if k in GPTConfig.__dataclass_fields__}  # model_config_of checks them
    return {
        "format": NANOGPT,
        "format_version": FORMAT_VERSION,
        "step": int(ckpt["iter_num"]),
        "model_state_dict": ckpt["model"],
        "loss": best,
        "val_loss": best,
        "best_val_loss": best,
        "config": dict(ckpt.get("config") or {}),
        "model_args": args,
    }


def load_checkpoint(path: str | Path, kind: str | tuple[str, ...] | None = None, mmap: bool = True) -> dict:
    """Read and check a checkpoint (.pt or .safetensors); the state dict comes back without wrapper prefixes."""
    ckpt = check_checkpoint(path, read_checkpoint(path, mmap=mmap), kind)
    ckpt["model_state_dict"] = clean_state_dict(ckpt["model_state_dict"])
    return ckpt


def load_resumable(path: str | Path, expected: GPTConfig, mmap: bool = False) -> dict:
    """A full checkpoint of the expected model at path, or a CheckpointError saying why it is not one."""
    ckpt = load_checkpoint(path, kind=FULL, mmap=mmap)
    check_architecture(path, ckpt, expected)
    return ckpt


def _misfit(path: str | Path, error: RuntimeError) -> CheckpointError:
    """load_state_dict's complaint (missing, unexpected or misshapen tensors) as one line about path."""
    return CheckpointError(path, f"weights do not fit the model ({' '.join(str(error).split())[:300]})")


def load_weights(model: torch.nn.Module, path: str | Path, ckpt: dict) -> None:
    """Load ckpt's weights into model (strict), as a CheckpointError naming the mismatch if any."""
    try:
        unwrap_model(model).load_state_dict(ckpt["model_state_dict"], strict=True)
    except RuntimeError as e:
        raise _misfit(path, e) from None


class _SkipInit(TorchFunctionMode):
    """torch.nn.init's initialisers as no-ops, in this thread only (function modes are thread-local).

    Initialising a model whose weights are about to be replaced is wasted work, and slow on the
    meta device: the first meta normal_ imports torch._dynamo, seconds in a fresh process.
    """

    NAMES = frozenset(n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_"))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in self.NAMES:
            return args[0] if args else kwargs["tensor"]  # the tensor, untouched
        return func(*args, **kwargs)


def model_with_weights(config: GPTConfig, state_dict: dict, path: str | Path) -> GPT:
    """A GPT whose parameters are state_dict's tensors themselves: no copy, no initialisation, strict."""
    with torch.device("meta"), _SkipInit():
        model = GPT(config)
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as e:
        raise _misfit(path, e) from None
    model.lm_head.weight = model.transformer.wte.weight  # assign=True replaced the tied tensor
    return model


def load_model(path: str | Path, device: str = "cpu") -> tuple[GPT, dict]:
    """A ready model in eval mode from any checkpoint (.pt or .safetensors, any kind): weights assigned in place."""
    ckpt = load_checkpoint(path)
    state = {k: v.float() for k, v in ckpt["model_state_dict"].items()}  # half-precision files too
    model = model_with_weights(model_config_of(path, ckpt), state, path)
    return model.to(device).eval(), ckpt
