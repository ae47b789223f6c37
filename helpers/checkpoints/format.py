"""Checkpoint files: what they hold, how they are written, read, checked and stripped.

Two kinds (docs/checkpoints.md), with the summary's keys (`step`, `model_state_dict`,
`optimizer_state_dict`, `loss`, `config`) and a few of our own beside them:

- full (`model_step_{step}.pt`, `model_final_full.pt`): everything needed to resume exactly.
- deployment (`model_final.pt`, `model_best.pt`): the weights alone, about a third of the size.

Two encodings, chosen by the file's suffix, so callers never choose: `.pt` (torch.save) and, for
deployment checkpoints, `.safetensors` (see helpers.checkpoints.safetensors_io). Every `.pt` file holds only
tensors, numbers, strings, lists and dicts, so it loads with `torch.load(path, weights_only=True)`,
and every write is atomic (see helpers.checkpoints.fileio). nanoGPT's `ckpt.pt` is read too, as its weights.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from helpers.checkpoints import safetensors_io
from helpers.checkpoints.fileio import atomic_torch_save, atomic_write_bytes
from helpers.checkpoints.safetensors_io import tensor_identity
from helpers.errors import CheckpointError, describe
from helpers.model import ARCHITECTURE, GPT, GPTConfig
from helpers.training.rng import capture_rng_state, restore_rng_state
from helpers.training.run_state import RESUME_ONLY, RunState

FORMAT = "gpt2-124m-colab"  # "format" in every file this project writes
FORMAT_VERSION = 1
FULL = "full"
DEPLOYMENT = "deployment"
# nanoGPT's ckpt.pt (github.com/karpathy/nanoGPT, train.py), read as its weights: its optimizer
# state has nanoGPT's two parameter groups (decay, no decay), which this project's one group cannot
# take, so it never resumes here. Its "format" while in memory; stripped, it is ours.
NANOGPT = "nanoGPT"
NANOGPT_KEYS = ("model", "model_args", "iter_num")
WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # added by torch.compile and DistributedDataParallel
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Keys each kind must have (docs/checkpoints.md). Files of this project also carry `model_args`;
# files in the checkpoint summary's own format describe the model in `config` (GPTConfig's fields).
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
# A full checkpoint's training-only keys, dropped from deployment files: the training pieces' own
# states (full_checkpoint writes them, restore_checkpoint reads them) and the run state's RESUME fields.
TRAINING_PIECES = ("optimizer_state_dict", "scaler_state_dict", "sampler_state", "rng_state")
TRAINING_ONLY = (*TRAINING_PIECES, *RESUME_ONLY)
# Causal-mask buffers that some GPT-2 implementations keep in their state dict; ours has none.
MASK_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")


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
    if kind == FULL:
        if optimizer is None:
            raise ValueError("a full checkpoint needs the optimizer")
        ckpt["optimizer_state_dict"] = optimizer.state_dict()
    ckpt.update(extra)
    return ckpt


def full_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    sampler: torch.Generator,
    run: RunState,
    config: dict,
    data: dict,
) -> dict:
    """Everything needed to resume from this moment: the pieces' states, the random generators', the run's.

    Tensors are references, not copies (helpers.checkpoints.writer copies what it writes later).
    """
    run_state = run.state_dict()
    return make_checkpoint(
        FULL,
        step=run_state.pop("step"),
        model=model,
        loss=run_state.pop("loss"),
        config=config,
        optimizer=optimizer,
        scaler_state_dict=scaler.state_dict(),
        sampler_state=sampler.get_state(),
        rng_state=capture_rng_state(),
        data=data,
        **run_state,
    )


def restore_checkpoint(
    path: str | Path,
    ckpt: dict,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    sampler: torch.Generator,
    run: RunState,
    optimizer_settings: dict,
    finished_stays: bool = True,
) -> None:
    """Put everything a full checkpoint holds back: weights, optimizer, scaler, sampler, random states, run state.

    optimizer_settings (weight_decay, betas) are this run's and win over the file's; the learning
    rate is set at every step. A file in the summary's own format has only its five keys: the
    rest keeps its start values (resumed, less exactly). A finished run stays finished, its whole
    history kept for the chart, unless finished_stays is False (a file named to train on from).
    """
    load_weights(model, path, ckpt)
    optimizer.load_state_dict(ckpt["optimizer_state_dict"])
    for group in optimizer.param_groups:
        group.update(optimizer_settings)
    if ckpt.get("scaler_state_dict"):
        scaler.load_state_dict(ckpt["scaler_state_dict"])
    if "sampler_state" in ckpt:
        sampler.set_state(ckpt["sampler_state"])
    if "rng_state" in ckpt:
        restore_rng_state(ckpt["rng_state"])
    run.load_state_dict(ckpt)
    if run.stop_reason is None or not finished_stays:
        run.train_on()


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


def checkpoint_kind(ckpt: dict) -> str:
    """'nanoGPT' for its ckpt.pt, else the kind the file says, else 'full' if it can resume, else 'deployment'."""
    if ckpt.get("format") == NANOGPT:
        return NANOGPT
    declared = ckpt.get("kind")  # the summary's own format says none (docs/checkpoints.md)
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


def load_checkpoint(path: str | Path, kind: str | tuple[str, ...] | None = None, mmap: bool = True) -> dict:
    """Read and check a checkpoint (.pt or .safetensors); the state dict comes back without wrapper prefixes."""
    ckpt = check_checkpoint(path, read_checkpoint(path, mmap=mmap), kind)
    ckpt["model_state_dict"] = clean_state_dict(ckpt["model_state_dict"])
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
    """The deployment checkpoint of a full one: its keys less TRAINING_ONLY (the weights and how they were made)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    deploy = {k: v for k, v in ckpt.items() if k not in TRAINING_ONLY}
    deploy.update(format=FORMAT, format_version=FORMAT_VERSION, kind=DEPLOYMENT)  # nanoGPT's, stripped, is ours
    deploy["dtype"] = dtype
    deploy["model_state_dict"] = convert_state_dict(ckpt["model_state_dict"], DTYPES[dtype])
    return deploy
