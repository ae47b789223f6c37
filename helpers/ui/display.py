"""What the notebook shows: a settings table, a live loss chart, and the checkpoint table."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

from helpers.checkpoints.policy import CHECKPOINT_FILES, PERIODIC_PATTERN, file_size_mb, periodic_checkpoints


def in_notebook() -> bool:
    """True inside a Jupyter/Colab kernel, False in a plain Python script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def table(rows: list[tuple[str, object]]) -> str:
    """Two aligned columns of text."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


class LossChart:
    """Training and validation loss, redrawn in place in a notebook and saved as a PNG.

    In a notebook it updates one display handle (never clear_output, which would also wipe the
    progress bar); in a script it only writes the PNG.
    """

    def __init__(
        self, png_path: str | Path | None = None, steps_per_epoch: float | None = None, live: bool | None = None
    ):
        self.live = in_notebook() if live is None else live
        if not self.live:
            matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt

        self.png_path = Path(png_path) if png_path else None
        self.fig, self.ax = plt.subplots(figsize=(7, 3.5))
        if steps_per_epoch:  # a second x axis: how many times the model has seen the training text
            epoch_axis = self.ax.secondary_xaxis(
                "top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch)
            )
            epoch_axis.set_xlabel("epoch")
        plt.close(self.fig)  # shown through the display handle only, not again at cell end
        self.handle = None

    def update(self, history: dict) -> None:
        """Redraw from history {'train': [[step, loss], ...], 'val': [[step, loss], ...]}."""
        ax = self.ax
        for line in list(ax.lines) + list(ax.collections):  # not ax.clear(), which drops the epoch axis
            line.remove()
        for split, style, color in (("train", "-", "C0"), ("val", "o-", "C1")):
            points = history.get(split, [])
            if points:
                steps, losses = zip(*points)
                ax.plot(steps, losses, style, color=color, label=f"{split} ({losses[-1]:.3f})", markersize=3)
        finite = [(s, v) for s, v in history.get("val", [])[1:] if math.isfinite(v)]
        if finite:  # the best model: the lowest validation loss after step 0
            best_step, best_loss = min(finite, key=lambda sv: sv[1])
            ax.plot(
                [best_step],
                [best_loss],
                "*",
                color="C3",
                markersize=12,
                label=f"best (step {best_step}, {best_loss:.3f})",
            )
        ax.relim()
        ax.autoscale_view()
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
        if self.live:
            from IPython.display import display

            if self.handle is None:
                self.handle = display(self.fig, display_id=True)
            else:
                self.handle.update(self.fig)

    def save(self) -> Path | None:
        """Write the chart as a PNG (atomically), if a path was given."""
        if self.png_path is None:
            return None
        from helpers.fileio import atomic_write

        return atomic_write(self.png_path, lambda f: self.fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))


def checkpoint_table(checkpoint_dir: str | Path) -> str:
    """The checkpoint table for the files in checkpoint_dir, with their measured sizes."""
    directory = Path(checkpoint_dir)
    found = [path for _, path in periodic_checkpoints(directory)]
    found += [directory / name for name in CHECKPOINT_FILES if (directory / name).exists()]
    rows = [("file", "size", "contains", "use it to")]
    for path in found:
        key = "model_step_{step}.pt" if PERIODIC_PATTERN.match(path.name) else path.name
        rows.append((path.name, f"{file_size_mb(path):,.1f} MB", *CHECKPOINT_FILES[key]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)
