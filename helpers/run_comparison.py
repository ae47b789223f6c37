"""Runs side by side: every run folder under a checkpoints root in one table, and their validation curves on one chart.

A run folder is one that holds a run's files: `run_summary.json` and `model_final.pt` once
finished, periodic full checkpoints while not. Its figures come from run_summary.json (with the
report's perplexity and extraction where the run wrote them) and its curve from the newest
checkpoint's history, read memory-mapped (the weights are not read).
"""

from __future__ import annotations

import json
import math
import urllib.parse
from pathlib import Path

from helpers.checkpoints.policy import FINAL, FINAL_FULL, periodic_checkpoints
from helpers.checkpoints.storage import read_checkpoint
from helpers.config import SHAKESPEARE_URL
from helpers.data_source import SHAKESPEARE_SHA256
from helpers.errors import PathError
from helpers.report_card import SUMMARY, perplexity
from helpers.ui.display import in_notebook


def _text_name(url: str | None, text_sha256: object) -> str:
    """A run's text in a few words: tiny Shakespeare (by its address or the sha256 the run recorded), or its name.

    The recorded sha256 decides, not the text's own: a listing never reads a corpus again.
    """
    if not url:
        return "?"
    if url == SHAKESPEARE_URL or text_sha256 == SHAKESPEARE_SHA256:
        return "tiny Shakespeare"
    return Path(urllib.parse.urlparse(url).path).name or url


def read_run(folder: Path) -> dict | None:
    """A run folder's figures and validation curve; None for a folder that holds no run."""
    summary_path, final = folder / SUMMARY, folder / FINAL
    periodic = periodic_checkpoints(folder)
    newest = final if final.exists() else (folder / FINAL_FULL if (folder / FINAL_FULL).exists() else None)
    newest = newest or (periodic[-1][1] if periodic else None)
    if newest is None:
        return None
    run = {"folder": folder.name, "finished": final.exists() and summary_path.exists()}
    try:
        ckpt = read_checkpoint(newest)
    except PathError as e:
        return dict(run, problem=e.problem)
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    summary = {}
    if run["finished"]:
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            summary = {}
    history = ckpt.get("history") if isinstance(ckpt.get("history"), dict) else {}
    tokens_per_step = config.get("batch_size", 0) * config.get("block_size", 0) * config.get("grad_accum_steps", 0)
    best = summary.get("best_val_loss", ckpt.get("best_val_loss"))
    memo = summary.get("memorization") or {}
    steps = summary.get("steps", ckpt.get("step"))
    return dict(
        run,
        kind=f"{config.get('preset', '?')}"
        + ("" if config.get("init_from", "scratch") == "scratch" else ", fine-tuned"),
        text=_text_name(
            config.get("data_url"), (ckpt.get("data") if isinstance(ckpt.get("data"), dict) else {}).get("text_sha256")
        ),
        steps=steps,
        epochs=summary.get("epochs"),
        best_val_loss=best,
        val_perplexity=summary.get("val_perplexity") or perplexity(best),
        train_extracted=memo.get("train_extracted"),
        val_extracted=memo.get("val_extracted"),
        minutes=summary["session_seconds"] / 60 if "session_seconds" in summary else None,
        hardware=summary.get("device"),
        tokens_per_step=tokens_per_step,
        val_curve=[p for p in history.get("val", []) if isinstance(p, (list, tuple)) and len(p) == 2],
    )


def find_runs(root: str | Path) -> list[dict]:
    """The runs in root itself and in the folders right below it, in name order."""
    root = Path(root)
    if not root.is_dir():
        raise PathError(root, "no such folder of runs")
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    runs = []
    for folder in folders:
        try:
            run = read_run(folder)
        except OSError:  # a folder this user may not read (a shared /tmp, say): not a run of theirs
            continue
        if run is not None:
            runs.append(run)
    return runs


def _cell(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt)


def runs_table(runs: list[dict]) -> str:
    """The runs as an aligned text table, one line each; an unfinished run says so."""
    header = ("run", "kind", "text", "steps", "epochs", "best val", "ppl", "extracted", "min", "hardware")
    rows = [header]
    for r in runs:
        if "problem" in r:
            rows.append((r["folder"], f"unreadable: {r['problem']}", *[""] * 8))
            continue
        extracted = (
            f"{r['train_extracted']:.0%} / {r['val_extracted']:.0%}" if r["train_extracted"] is not None else "-"
        )
        status = "" if r["finished"] else " (unfinished)"
        rows.append(
            (
                r["folder"] + status,
                r["kind"],
                r["text"],
                _cell(r["steps"], "d"),
                _cell(r["epochs"], ".2f"),
                _cell(r["best_val_loss"], ".4f"),
                _cell(r["val_perplexity"], ",.1f"),
                extracted,
                _cell(r["minutes"], ".1f"),
                r["hardware"] or "-",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    note = "extracted: training / validation windows (docs/report.md)"
    return "\n".join(lines + [note])


def runs_chart(runs: list[dict]) -> object:
    """The runs' validation curves on one chart, against tokens seen (runs of other batch sizes line up)."""
    import matplotlib

    if not in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in runs:
        if r.get("val_curve") and r.get("tokens_per_step"):
            steps, losses = zip(*r["val_curve"])
            ax.plot([s * r["tokens_per_step"] / 1e6 for s in steps], losses, "o-", markersize=3, label=r["folder"])
    ax.set_xlabel("tokens seen (millions)")
    ax.set_ylabel("validation loss")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    plt.close(fig)
    return fig


def compare_runs(root: str | Path, png: str | Path | None = None) -> list[dict]:
    """Print the table of the runs under root and show their chart (in a notebook; saved to png if given)."""
    runs = find_runs(root)
    if not runs:
        print(f"{root}: no runs here yet")
        return runs
    print(runs_table(runs))
    fig = runs_chart(runs)
    if png is not None:
        from helpers.fileio import atomic_write

        atomic_write(Path(png), lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
    if in_notebook():
        from IPython.display import display

        display(fig)
    return runs
