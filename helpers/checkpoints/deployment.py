"""The strip utility: a full checkpoint (or nanoGPT's ckpt.pt) becomes a deployment checkpoint.

Used by `python -m helpers.create_deployment_checkpoint` and by the notebook's download cell. The
input is memory-mapped, so the optimizer state (two thirds of the file) is never read into
memory; the output is written atomically and the input is never touched.
"""

from __future__ import annotations

from pathlib import Path

from helpers.checkpoints.format import FULL, NANOGPT, to_deployment
from helpers.checkpoints.storage import load_checkpoint, save_checkpoint
from helpers.errors import OutputError

DTYPE_SUFFIX = {"float32": "", "float16": "_fp16", "bfloat16": "_bf16"}


def default_output(input_path: Path, dtype: str) -> Path:
    """The policy's names (docs/checkpoints.md): model_final_full.pt -> model_final.pt; otherwise NAME_deploy.pt."""
    stem = input_path.stem
    base = stem[: -len("_full")] if stem.endswith("_full") else f"{stem}_deploy"
    return input_path.with_name(f"{base}{DTYPE_SUFFIX[dtype]}.pt")


def create_deployment_checkpoint(
    input_path: str | Path, output_path: str | Path | None = None, dtype: str = "float32", force: bool = False
) -> Path:
    """Write the deployment form of a full (or nanoGPT) checkpoint; never over the input, nor any file unless forced."""
    input_path = Path(input_path)
    full = load_checkpoint(input_path, kind=(FULL, NANOGPT))
    output_path = Path(output_path) if output_path else default_output(input_path, dtype)
    if output_path.resolve() == input_path.resolve():
        raise OutputError(output_path, "is the input file; choose another output path")
    if output_path.exists() and not force:
        raise OutputError(output_path, "already exists; pass --force to replace it")
    return save_checkpoint(to_deployment(full, dtype), output_path)  # .pt, or .safetensors by its name
