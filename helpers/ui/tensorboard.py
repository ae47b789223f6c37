"""TensorBoard event files for a run, in its checkpoint folder's tensorboard/: losses, learning rate, speed, samples.

TensorBoard is the tracker Colab ships and shows inline, with no account. The files live in the
run's folder, so on Drive they survive a runtime reset, and a resumed run continues the same
curves: the writer purges what an interrupted session wrote after the checkpoint it resumes from,
so each step appears once (docs/report.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from helpers.errors import describe
from helpers.ui.display import in_notebook

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

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
        # Each step's events are flushed before its checkpoint is written (train and val below),
        # so a kill at any moment loses none that the resumed run does not write again.
        try:
            self.writer = SummaryWriter(log_dir=str(Path(folder) / LOG_DIR), purge_step=step + 1 if step else 0)
        except OSError as e:
            print(f"TensorBoard logs off: {describe(e)}; training goes on")

    def _write(self, write: Callable[[SummaryWriter], object]) -> None:
        """write(writer), unless off; a failed write (a full disk, say) turns the log off in a line, not training."""
        if self.writer is None:
            return
        try:
            write(self.writer)
        except OSError as e:  # its background thread's errors surface in the next call
            print(f"TensorBoard logs off: {describe(e)}; training goes on")
            self.writer = None

    def train(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        """A logged training step: its loss, learning rate and speed."""
        for tag, value in (("train/loss", loss), ("train/lr", lr), ("train/tokens_per_s", tokens_per_s)):
            self._write(lambda w: w.add_scalar(tag, value, step))
        self._write(lambda w: w.flush())

    def val(self, step: int, loss: float) -> None:
        """An evaluation's validation loss."""
        self._write(lambda w: w.add_scalar("val/loss", loss, step))
        self._write(lambda w: w.flush())

    def sample(self, step: int, text: str) -> None:
        """A sample of the model's text at this step."""
        self._write(lambda w: w.add_text("samples", text, step))

    def close(self) -> None:
        """Write what is pending and close the files."""
        self._write(lambda w: w.close())
        self.writer = None


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
