"""TensorBoard event files for a run, in its checkpoint folder's tensorboard/: losses, learning rate, speed, samples.

TensorBoard is the tracker Colab ships and shows inline, with no account. The files live in the
run's folder, so on Drive they survive a runtime reset, and a resumed run continues the same
curves: the writer purges what an interrupted session wrote after the checkpoint it resumes from,
so each step appears once (docs/report.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from helpers.ui.display import in_notebook

LOG_DIR = "tensorboard"  # inside the run's checkpoint folder
NOT_INSTALLED = "TensorBoard logs off: tensorboard is not installed (pip install tensorboard); training goes on"


class TensorBoardLog:
    """The run's event files, written by process 0 (or nothing, where off or tensorboard is missing)."""

    def __init__(self, folder: str | Path, step: int, enabled: bool = True) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            print(NOT_INSTALLED)
            return
        # Resumed at `step`: events after it came from the session that was interrupted, and are
        # written again now; purge_step makes TensorBoard drop them (0: a fresh run drops all).
        self.writer = SummaryWriter(log_dir=str(Path(folder) / LOG_DIR), purge_step=step + 1 if step else 0)

    def train(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        """A logged training step: its loss, learning rate and speed."""
        if self.writer:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)
            self.writer.add_scalar("train/tokens_per_s", tokens_per_s, step)

    def val(self, step: int, loss: float) -> None:
        """An evaluation's validation loss; flushed, so a crash loses at most the steps since."""
        if self.writer:
            self.writer.add_scalar("val/loss", loss, step)
            self.writer.flush()

    def sample(self, step: int, text: str) -> None:
        """A sample of the model's text at this step."""
        if self.writer:
            self.writer.add_text("samples", text, step)

    def close(self) -> None:
        """Write what is pending and close the files."""
        if self.writer:
            self.writer.close()


def show_tensorboard(logdir: str | Path) -> None:
    """TensorBoard inline in Colab (its %tensorboard, through the API it calls); elsewhere the command to run.

    Only in Colab: a local Jupyter (or a test's kernel) would be left with a server it did not ask for.
    """
    in_colab = importlib.util.find_spec("google") is not None and importlib.util.find_spec("google.colab") is not None
    if not (in_notebook() and in_colab):
        print(f"to see the runs in TensorBoard: tensorboard --logdir {logdir}")
        return
    try:
        from tensorboard import notebook
    except ImportError:
        print(NOT_INSTALLED.split(";")[0])
        return
    notebook.start(f"--logdir '{logdir}'")
