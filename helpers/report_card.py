"""A model's report card: its losses, perplexity and memorization figures, and the run's report.md.

`evaluate_model` measures a model against the text it was trained on (helpers.memorization for
the copying figures); `figures_table` is those figures as the markdown table that report.md, the
Hub model card and the Space's card share; `write_run_report` writes a finished run's report.md
and adds the figures to its run_summary.json. docs/report.md says how to read them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from helpers.data import eval_offsets, get_batch, get_encoding
from helpers.fileio import atomic_write_bytes
from helpers.memorization import MIN_COPY_CHARS, memorization
from helpers.model import GPT

REPORT = "report.md"
SUMMARY = "run_summary.json"
FIGURES = ("train_loss", "val_loss", "train_perplexity", "val_perplexity", "memorization")  # what figures_table shows


@torch.no_grad()
def split_loss(model: GPT, tokens: np.ndarray, batch_size: int = 8, max_batches: int = 0) -> float:
    """Mean loss per token over a split's consecutive windows of the model's context (the notebook's evaluation)."""
    block_size, device = model.config.block_size, next(model.parameters()).device
    total = count = 0.0
    for offsets in eval_offsets(len(tokens), block_size, batch_size, max_batches):
        x, y = get_batch(tokens, offsets, block_size, device)
        _, loss = model(x, y)
        total, count = total + loss.item() * len(offsets), count + len(offsets)
    return total / count


def perplexity(loss: float | None) -> float | None:
    """exp(loss): the number of tokens the model hesitates between, on average (None for no loss)."""
    return math.exp(loss) if loss is not None and math.isfinite(loss) and loss < 700 else None


def evaluate_model(
    model: GPT,
    train_tokens: np.ndarray,
    val_tokens: np.ndarray,
    losses: dict | None = None,
    windows: int = 64,
    sample_tokens: int = 256,
    batch_size: int = 8,
    eval_batches: int = 0,
    seed: int = 1337,
) -> dict:
    """The report's figures of a model: train_loss, val_loss, val_perplexity, memorization, samples.

    losses ({"train": ..., "val": ...}) where the caller has measured them already (the notebook,
    under torchrun, over every process); else they are measured here as the notebook measures
    them: over the validation split's consecutive windows (all, or the first eval_batches
    batches of batch_size) and as many training windows.
    """
    was_training = model.training
    model.eval()
    if losses is None:
        val_batches = len(eval_offsets(len(val_tokens), model.config.block_size, batch_size, eval_batches))
        losses = {"val": split_loss(model, val_tokens, batch_size, eval_batches)}
        losses["train"] = split_loss(model, train_tokens, batch_size, val_batches)
    m = memorization(model, train_tokens, val_tokens, get_encoding(), windows, sample_tokens=sample_tokens, seed=seed)
    model.train(was_training)
    return {
        "train_loss": losses["train"],
        "val_loss": losses["val"],
        "train_perplexity": perplexity(losses["train"]),
        "val_perplexity": perplexity(losses["val"]),
        "memorization": {k: v for k, v in m.items() if k != "samples"},
        "samples": m["samples"],
    }


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def figures_table(figures: dict) -> str:
    """The figures as a markdown table, train beside validation, then the copying line (report.md, the cards)."""
    m = figures["memorization"]
    where = m.get("longest_copied") or {}
    longest = f"{m['longest_copied_chars']} characters"
    if m["longest_copied_chars"]:
        longest += f" (line {where.get('line')} of the training text)"
    return "\n".join(
        [
            "| | training text | validation text |",
            "|---|---|---|",
            f"| loss | {_number(figures['train_loss'], 4)} | {_number(figures['val_loss'], 4)} |",
            f"| perplexity | {_number(figures.get('train_perplexity'))} | {_number(figures['val_perplexity'])} |",
            f"| extracted: {m['suffix_tokens']}-token suffix from its {m['prefix_tokens']}-token prefix, greedy "
            f"({m['windows']} windows) | {m['train_extracted']:.1%} | {m['val_extracted']:.1%} |",
            f"| free samples (temperature 0.8, top-k 200): characters in a {MIN_COPY_CHARS}+ character span "
            f"of the training text | {m['sample_copied']:.1%} | |",
            f"| longest such span | {longest} | |",
        ]
    )


def _quote(text: str) -> str:
    """A sample as a markdown block quote, line by line."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.strip("\n").splitlines())


def _run_rows(summary: dict) -> list[tuple[str, str]]:
    """What the run did, from run_summary.json, as (name, value) rows."""
    minutes = summary.get("session_seconds", 0) / 60
    tokens = summary.get("steps", 0) * summary.get("tokens_per_step", 0)
    return [
        ("hardware", f"{summary.get('device')}" + (", compiled" if summary.get("compiled") else "")),
        ("precision", str(summary.get("dtype"))),
        ("model", f"{summary.get('parameters', 0) / 1e6:,.2f}M parameters"),
        ("text", str(summary.get("data_url", "?"))),
        ("training", f"{summary.get('steps')} steps, {tokens:,} tokens, {summary.get('epochs', 0):.2f} epochs"),
        ("time", f"{minutes:.1f} min of training in the last session"),
        ("best step", f"{summary.get('best_step')} (validation loss {_number(summary.get('best_val_loss'), 4)})"),
        ("why it stopped", str(summary.get("stop_reason"))),
    ]


def run_report(title: str, figures: dict, summary: dict, samples: list, chart: str | None = "loss.png") -> str:
    """report.md: the run, the figures table, the loss chart, samples as it trained and of the final model."""
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in _run_rows(summary)]
    lines += ["", "## The model", "", figures_table(figures), ""]
    if chart:
        lines += ["## Loss", "", f"![training and validation loss]({chart})", ""]
    if samples:
        lines += ["## Samples as it trained (at each new best validation loss)", ""]
        for step, val_loss, text in samples:
            lines += [f"step {step}, validation loss {val_loss:.4f}:", "", _quote(text), ""]
    if figures.get("samples"):
        lines += ["## Samples of the final model (temperature 0.8, top-k 200)", ""]
        for text in figures["samples"]:
            lines += [_quote(text), ""]
    return "\n".join(lines)


def write_run_report(folder: str | Path, figures: dict, summary: dict, samples: list) -> Path:
    """Write report.md in a finished run's folder, and its figures (val_perplexity, memorization...) in its summary."""
    folder = Path(folder)
    summary = dict(summary, **{k: v for k, v in figures.items() if k != "samples"})
    atomic_write_bytes(folder / SUMMARY, json.dumps(summary, indent=2).encode())
    chart = "loss.png" if (folder / "loss.png").exists() else None
    text = run_report(f"Run report: {folder.name}", figures, summary, samples, chart)
    return atomic_write_bytes(folder / REPORT, text.encode())


def figures_beside(checkpoint: str | Path, step: object) -> dict | None:
    """The report's figures of the run a checkpoint comes from (run_summary.json beside it), if they are its step's."""
    try:
        summary = json.loads((Path(checkpoint).parent / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or "memorization" not in summary or summary.get("final_step") != step:
        return None
    return summary
