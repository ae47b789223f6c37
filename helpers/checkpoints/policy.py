"""The saving policy (docs/checkpoints.md): the files a run keeps, and how each is written and rotated.

- periodic `model_step_{step}.pt`: full, the newest `keep_last` kept (PeriodicFiles);
- best `model_best.pt` (deployment) and `model_best_full.pt` (full, never rotated): the lowest
  validation loss so far, written just before a periodic file (save_best);
- final `model_final.pt` (deployment) and `model_final_full.pt` (full): the best step's state,
  written when training ends, whatever ended it (save_final).

When each is written is helpers.checkpoints.checkpointer's to say. A run whose folder another run
has taken over (helpers.checkpoints.lock) writes nothing more.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers.checkpoints.format import to_deployment
from helpers.checkpoints.lock import check_held
from helpers.checkpoints.storage import load_resumable, save_checkpoint
from helpers.errors import CheckpointError
from helpers.fileio import discard
from helpers.model import GPTConfig
from helpers.training.distributed import print0

BEST = "model_best.pt"
BEST_FULL = "model_best_full.pt"
FINAL = "model_final.pt"
FINAL_FULL = "model_final_full.pt"
PERIODIC_PATTERN = re.compile(r"^model_step_(\d+)\.pt$")
# What each file holds and is for: the one source of the checkpoint tables (notebook, README).
CHECKPOINT_FILES = {
    "model_step_{step}.pt": ("model + optimizer + training state", "resume training"),
    FINAL: ("model only", "deploy to Hugging Face"),
    FINAL_FULL: ("model + optimizer + training state", "fine-tune or train further"),
    BEST: ("model only", "deploy the best model"),
    BEST_FULL: ("model + optimizer + training state", "rebuild the final pair after a crash"),
}


def periodic_path(checkpoint_dir: str | Path, step: int) -> Path:
    """Where the periodic checkpoint of a step goes."""
    return Path(checkpoint_dir) / f"model_step_{step}.pt"


def periodic_checkpoints(checkpoint_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the periodic checkpoints in checkpoint_dir, oldest first."""
    directory = Path(checkpoint_dir)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := PERIODIC_PATTERN.match(p.name))]
    return sorted(found)


def file_size_mb(path: str | Path) -> float:
    """A file's size in MB (10^6 bytes)."""
    return Path(path).stat().st_size / 1e6


class PeriodicFiles:
    """A folder's periodic files as a run keeps them: each new one written whole, then the oldest beyond keep_last go.

    Only files the run can resume from count among keep_last, and the newest is always kept. A
    file the run did not write itself is checked the first time rotation meets it (memory-mapped:
    the pickle and the zip directory, which a truncated or foreign file fails, so a check costs
    little even for 1.5 GB on Drive); one that cannot be used is reported once and neither counted
    nor deleted: counting it would delete good files, deleting it would destroy what the user may
    want to look at. Files of later steps than the newest (another run's, or those ahead of a run
    resumed from an older file) are left alone too.
    """

    def __init__(self, checkpoint_dir: str | Path, keep_last: int, expected: GPTConfig) -> None:
        if keep_last < 1:
            raise ValueError("keep_last must be at least 1")
        self.folder, self.keep_last, self.expected = Path(checkpoint_dir), keep_last, expected
        self.verdicts: dict[Path, bool] = {}  # each file's, reached once

    def save(self, full_ckpt: dict) -> tuple[Path, list[Path]]:
        """Write model_step_{step}.pt, then rotate; return the new path and the deleted ones."""
        check_held(self.folder)
        path = save_checkpoint(full_ckpt, periodic_path(self.folder, full_ckpt["step"]))
        self.verdicts[path] = True  # written whole just now
        return path, self.rotate(path)

    def rotate(self, newest: Path) -> list[Path]:
        """Delete the usable files before newest but the keep_last - 1 newest of them; return the deleted."""
        newest_step = int(PERIODIC_PATTERN.match(newest.name)[1])
        others = [(step, path) for step, path in reversed(periodic_checkpoints(self.folder)) if path != newest]
        usable = [path for step, path in others if self.usable(path) and step < newest_step]  # all checked
        old = usable[self.keep_last - 1 :]
        for path in old:
            self.delete(path)
        return old

    def delete(self, path: Path) -> None:
        """Delete a periodic file (on Drive, emptied first: its trash would keep 1.5 GB for 30 days)."""
        discard(path)
        self.verdicts.pop(path, None)

    def usable(self, path: Path) -> bool:
        """Whether the run can resume from path: checked once, and if not, reported once."""
        if path not in self.verdicts:
            try:
                load_resumable(path, self.expected, mmap=True)
                self.verdicts[path] = True
            except CheckpointError as e:
                print0(f"rotation leaves {e} (not counted among the {self.keep_last} kept)")
                self.verdicts[path] = False
        return self.verdicts[path]


def save_best(checkpoint_dir: str | Path, full_ckpt: dict) -> tuple[Path, Path]:
    """Write model_best_full.pt (full), then model_best.pt (its deployment form)."""
    check_held(checkpoint_dir)
    directory = Path(checkpoint_dir)
    full = save_checkpoint(full_ckpt, directory / BEST_FULL)
    deploy = save_checkpoint(to_deployment(full_ckpt), directory / BEST)
    return deploy, full


def save_final(checkpoint_dir: str | Path, full_ckpt: dict) -> tuple[Path, Path, Path]:
    """Write model_final_full.pt (full), model_final.pt (deployment), and model_best.pt to match them."""
    check_held(checkpoint_dir)
    directory = Path(checkpoint_dir)
    full = save_checkpoint(full_ckpt, directory / FINAL_FULL)
    deploy = to_deployment(full_ckpt)
    return save_checkpoint(deploy, directory / FINAL), full, save_checkpoint(deploy, directory / BEST)
