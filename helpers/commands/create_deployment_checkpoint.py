"""Turn a full checkpoint into a deployment checkpoint: the weights without the optimizer state.

    python -m helpers.create_deployment_checkpoint checkpoints/model_final_full.pt
    python -m helpers.create_deployment_checkpoint model_step_2000.pt out.pt --dtype float16
    python -m helpers.create_deployment_checkpoint model_final_full.pt model_final.safetensors
    python -m helpers.create_deployment_checkpoint out/ckpt.pt model_final.pt     # nanoGPT's

nanoGPT's ckpt.pt becomes this project's deployment checkpoint: its weights (without
torch.compile's prefixes) and model_args (a vocabulary padded to 50304 stays so), step = its
iter_num, loss = its best_val_loss. The input is memory-mapped, so the optimizer state (two thirds
of the file) is never read into memory. The output is written atomically; the input is never touched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers.checkpoints.deployment import create_deployment_checkpoint
from helpers.checkpoints.format import DTYPES
from helpers.commands.cli import fail
from helpers.errors import PathError


def main(argv: list[str] | None = None) -> int:
    """The command line: parse argv, run, and return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.create_deployment_checkpoint",
        description="Strip the optimizer state from a full checkpoint.",
    )
    parser.add_argument(
        "input", type=Path, help="full checkpoint (model_step_N.pt, model_final_full.pt, or nanoGPT's ckpt.pt)"
    )
    parser.add_argument(
        "output",
        type=Path,
        nargs="?",
        help="default: beside the input, model_final_full.pt -> model_final.pt; a .safetensors name writes safetensors",
    )
    parser.add_argument(
        "--dtype", choices=list(DTYPES), default="float32", help="precision of the weights (default float32)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    try:
        output = create_deployment_checkpoint(args.input, args.output, args.dtype, args.force)
    # ValueError: e.g. a config value that a .safetensors header (JSON) cannot hold
    except (PathError, OSError, ValueError) as e:
        return fail(e, args.output)  # a write error names its file itself
    before, after = args.input.stat().st_size, output.stat().st_size
    print(f"{args.input}: {before / 1e6:,.1f} MB (full)")
    print(f"{output}: {after / 1e6:,.1f} MB (deployment, {args.dtype})")
    print(f"saved {before - after:,} bytes: {100 * (1 - after / before):.1f}% smaller")
    return 0


if __name__ == "__main__":
    sys.exit(main())
