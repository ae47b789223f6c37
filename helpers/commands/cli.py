"""What the command-line programs share: bad input as one line on stderr and status 1, the folder tools' arguments."""

from __future__ import annotations

import argparse
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from helpers.checkpoints.format import DTYPES
from helpers.errors import HubError, PathError, describe
from helpers.hf.hub import hub_token, upload_to_hub


def fail(error: Exception, path: str | Path | None = None) -> int:
    """Print error as one line naming the file (path, when the error names none) and return exit status 1."""
    if isinstance(error, OSError) and (error.filename or path):
        message = f"{error.filename or path}: {error.strerror or error}"
    elif isinstance(error, PathError) or path is None:
        message = str(error)
    else:
        message = f"{path}: {error}"
    print(f"error: {message}", file=sys.stderr)
    return 1


@contextmanager
def notes_printed() -> Iterator[None]:
    """The library's warnings (e.g. no tokenizer files) inside the block, printed as one line each on stdout."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for note in caught:
                print(note.message)


def folder_tool_parser(
    prog: str,
    description: str,
    push_help: str,
    dtypes: list[str] | None = None,
    dtype_help: str = "precision of the weights written (default float32)",
) -> argparse.ArgumentParser:
    """The arguments of the tools that write a folder from a checkpoint: CHECKPOINT OUT_DIR --force --dtype --push."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "checkpoint", type=Path, help="model_final.pt, model_best.pt, a full or .safetensors checkpoint"
    )
    parser.add_argument("out_dir", type=Path, help="folder to write (created; must be empty unless --force)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUT_DIR")
    parser.add_argument(
        "--dtype", choices=dtypes or list(DTYPES), default=None if dtypes else "float32", help=dtype_help
    )
    parser.add_argument("--push", metavar="REPO_ID", help=push_help)
    return parser


def push(folder: Path, repo_id: str, repo_type: str) -> int:
    """--push: upload folder to repo_id and print its URL, or say in one line why not; the exit status."""
    if hub_token() is None:
        return fail(
            HubError(
                folder,
                f"not pushed to {repo_id}: no Hugging Face token; set HF_TOKEN to a write token "
                "(https://huggingface.co/settings/tokens) or run `hf auth login`, then pass --push again",
            )
        )
    try:
        url = upload_to_hub(folder, repo_id, repo_type=repo_type)
    except HubError as e:  # e.g. a Gradio Space the account may not host: the line says what to do
        return fail(e)
    except (OSError, ValueError) as e:  # network and HTTP errors (OSErrors), a bad repo id: the folder itself stands
        return fail(HubError(folder, f"upload to {repo_id} failed ({describe(e)})"))
    print(f"uploaded {folder} to {url}")
    return 0
