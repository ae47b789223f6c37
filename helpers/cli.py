"""What the command-line tools share: bad input as one line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers.checkpoint import DTYPES, CheckpointError


def fail(error: Exception, path: str | Path | None = None) -> int:
    """Print error as one line naming the file (path, when the error names none) and return exit status 1."""
    if isinstance(error, OSError) and not isinstance(error, CheckpointError):
        message = f"{error.filename or path}: {error.strerror or error}"
    elif isinstance(error, CheckpointError) or path is None:
        message = str(error)
    else:
        message = f"{path}: {error}"
    print(f"error: {message}", file=sys.stderr)
    return 1


def folder_tool_parser(prog: str, description: str, push_help: str) -> argparse.ArgumentParser:
    """The arguments of the tools that write a folder from a checkpoint: CHECKPOINT OUT_DIR --force --dtype --push."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("checkpoint", type=Path, help="model_final.pt, model_best.pt, a full or .safetensors checkpoint")
    parser.add_argument("out_dir", type=Path, help="folder to write (created; must be empty unless --force)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUT_DIR")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="precision of the weights written (default float32)")
    parser.add_argument("--push", metavar="REPO_ID", help=push_help)
    return parser
