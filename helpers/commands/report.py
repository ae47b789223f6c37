"""The report of a checkpoint (losses, perplexity, memorization, samples), or of every run under a folder.

    python -m helpers.report checkpoints/cpu-7m/model_final.pt
    python -m helpers.report model_final.pt --data my_text.txt --json
    python -m helpers.report --runs checkpoints [--chart runs.png]

Any checkpoint the project writes (deployment or full, .pt or .safetensors) is measured against
the text it was trained on: the checkpoint's own data_url (prepared into data/ as the notebook
does), or --data. A checkpoint that records its text's sha256 is refused on another text.
docs/report.md says how to read the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from helpers.checkpoints.storage import load_model
from helpers.commands.cli import fail
from helpers.config import SHAKESPEARE_URL
from helpers.data import VOCAB_SIZE, load_splits, prepare_data
from helpers.data_source import data_folder, text_identity
from helpers.documents import Reading
from helpers.errors import CheckpointError, DataError, PathError
from helpers.report_card import evaluate_model, figures_table
from helpers.run_comparison import compare_runs

REPO = Path(__file__).resolve().parents[2]


def training_text(path: Path, ckpt: dict, block_size: int, data_url: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """The training and validation tokens of the text the checkpoint was trained on (or data_url's), and its url."""
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    url = data_url or config.get("data_url") or SHAKESPEARE_URL
    reading = Reading(str(config.get("text_field", "text")), str(config.get("data_encoding", "")))
    data = ckpt.get("data") if isinstance(ckpt.get("data"), dict) else {}
    recorded = data.get("text_sha256")

    def check(digest: str) -> None:
        if recorded and recorded != digest:
            raise DataError(
                url,
                f"is not the text {path.name} was trained on (sha256 {digest[:16]}, the checkpoint's "
                f"{recorded[:16]}); pass that text with --data",
            )

    identity = text_identity(url)  # a local text's sha256, checked before it is tokenised; None: a download
    if identity is not None:
        check(identity[0])
    # where the notebook keeps its texts: GPT2_DATA_DIR as in a run, else the checkpoint's data_dir
    folder = data_folder(REPO / os.environ.get("GPT2_DATA_DIR", str(config.get("data_dir", "data"))), url, reading)
    meta = prepare_data(folder, url, reading)
    check(meta["source_sha256"])
    if not recorded:
        print(f"note: {path.name} does not record its text; measured on {url}", file=sys.stderr)
    train, val = load_splits(folder, block_size, float(config.get("train_fraction", 1.0)))
    return train, val, url


def report(path: Path, data_url: str | None, windows: int, batches: int | None = None) -> dict:
    """The figures of the checkpoint at path against its text: the --json object.

    The losses are measured as its run measured them (its batch_size and eval_iters), unless
    batches (0: the whole validation split) says otherwise.
    """
    model, ckpt = load_model(path)
    if model.config.vocab_size != VOCAB_SIZE:
        raise CheckpointError(path, f"has a vocabulary of {model.config.vocab_size} tokens, not GPT-2's {VOCAB_SIZE}")
    train, val, url = training_text(path, ckpt, model.config.block_size, data_url)
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    figures = evaluate_model(
        model,
        train,
        val,
        windows=windows,
        batch_size=int(config.get("batch_size", 8)),
        eval_batches=int(config.get("eval_iters", 0) if batches is None else batches),
        seed=int(config.get("seed", 1337)),
    )
    return dict(checkpoint=str(path), step=ckpt.get("step"), data_url=url, **figures)


def main(argv: list[str] | None = None) -> int:
    """The command line: parse argv, run, and return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.report",
        description="The report card of a checkpoint (losses, perplexity, memorization, samples), "
        "or every run under a folder side by side.",
    )
    parser.add_argument("checkpoint", type=Path, nargs="?", help="model_final.pt, model_best.pt, any checkpoint")
    parser.add_argument("--data", metavar="DATA_URL", help="the text it was trained on (default: the checkpoint's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--windows", type=int, default=64, help="windows from each split for extraction (default 64)")
    parser.add_argument(
        "--batches",
        type=int,
        metavar="N",
        help="measure the losses on the first N batches of the validation text (0: all of it; default: as its run did)",
    )
    parser.add_argument("--runs", type=Path, metavar="CHECKPOINTS_ROOT", help="list every run folder under it instead")
    parser.add_argument("--chart", type=Path, metavar="PNG", help="with --runs: save the validation curves there")
    args = parser.parse_args(argv)
    if (args.checkpoint is None) == (args.runs is None):
        parser.error("give a CHECKPOINT or --runs CHECKPOINTS_ROOT")
    if args.windows < 1:
        parser.error(f"--windows {args.windows}: must be at least 1")
    if args.batches is not None and args.batches < 0:
        parser.error(f"--batches {args.batches}: must not be negative")
    try:
        if args.runs is not None:
            compare_runs(args.runs, args.chart)
            return 0
        with torch.no_grad():
            figures = report(args.checkpoint, args.data, args.windows, args.batches)
    except (PathError, OSError) as e:
        return fail(e, args.runs or args.checkpoint)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"{figures['checkpoint']} (step {figures['step']}) on {figures['data_url']}\n")
    print(figures_table(figures))
    for text in figures["samples"][:2]:
        print(f"\nsample:\n{text.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
