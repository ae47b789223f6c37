"""The checkpoint policy of the user's document: periodic, best and final files, and resuming.

- periodic `model_step_{step}.pt`: full, every `save_every` steps, the newest `keep_last` kept;
- best `model_best.pt` (deployment) and `model_best_full.pt` (full, never rotated): the lowest
  validation loss so far, kept in memory as it happens and written out at each periodic save,
  just before the periodic file (so any file a run resumes from has its best on disk);
- final `model_final.pt` (deployment) and `model_final_full.pt` (full): the best step's state,
  written when training ends, whatever ended it.

A periodic save is due every `save_every` steps, or `save_every_minutes` after the last one.
A new file is always in place before an old one is deleted.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

from helpers.checkpoint import (
    FULL,
    CheckpointError,
    check_architecture,
    load_checkpoint,
    save_checkpoint,
    to_deployment,
)
from helpers.model import GPTConfig
from helpers.writer import snapshot

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


def rotate(checkpoint_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest keep_last periodic checkpoints; return the deleted paths."""
    if keep_last < 1:
        raise ValueError("keep_last must be at least 1")
    old = [p for _, p in periodic_checkpoints(checkpoint_dir)[:-keep_last]]
    for p in old:
        p.unlink(missing_ok=True)
    return old


def file_size_mb(path: str | Path) -> float:
    """A file's size in MB (10^6 bytes)."""
    return Path(path).stat().st_size / 1e6


def save_best(checkpoint_dir: str | Path, full_ckpt: dict) -> tuple[Path, Path]:
    """Write model_best_full.pt (full), then model_best.pt (its deployment form)."""
    directory = Path(checkpoint_dir)
    full = save_checkpoint(full_ckpt, directory / BEST_FULL)
    deploy = save_checkpoint(to_deployment(full_ckpt), directory / BEST)
    return deploy, full


def save_final(checkpoint_dir: str | Path, full_ckpt: dict) -> tuple[Path, Path, Path]:
    """Write model_final_full.pt (full), model_final.pt (deployment), and model_best.pt to match them."""
    directory = Path(checkpoint_dir)
    full = save_checkpoint(full_ckpt, directory / FINAL_FULL)
    deploy = to_deployment(full_ckpt)
    return save_checkpoint(deploy, directory / FINAL), full, save_checkpoint(deploy, directory / BEST)


def save_periodic(checkpoint_dir: str | Path, full_ckpt: dict, keep_last: int,
                  best_ckpt: dict | None = None) -> tuple[Path, list[Path]]:
    """Write the best pair (if given), then model_step_{step}.pt, then rotate; return the new path and the deleted ones."""
    if best_ckpt is not None:
        save_best(checkpoint_dir, best_ckpt)
    path = save_checkpoint(full_ckpt, periodic_path(checkpoint_dir, full_ckpt["step"]))
    return path, rotate(checkpoint_dir, keep_last)


class SaveClock:
    """Says when a periodic save is due: every save_every steps, or save_every_minutes after the last."""

    def __init__(self, save_every: int, save_every_minutes: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.save_every, self.seconds, self.clock = save_every, save_every_minutes * 60, clock
        self.last = clock()

    def due(self, step: int) -> bool:
        """True if a periodic save is due after this step."""
        return step % self.save_every == 0 or (self.seconds > 0 and self.clock() - self.last >= self.seconds)

    def saved(self) -> None:
        """Start the clock again: a save was just made."""
        self.last = self.clock()


class BestState:
    """The full training state at the lowest validation loss so far: a CPU copy, written out later.

    Copying on every improvement is cheap (0.1 s for GPT-2 124M); writing 1.5 GB to Drive each
    time would not be. A copy handed out to be written is never copied into again.
    """

    def __init__(self) -> None:
        self.ckpt: dict | None = None
        self.unsaved = False
        self._lent = False

    def update(self, full_ckpt: dict) -> None:
        """Keep a copy of this state as the best."""
        self.ckpt = snapshot(full_ckpt, into=None if self._lent else self.ckpt)
        self.unsaved, self._lent = True, False

    def take_unsaved(self) -> dict | None:
        """The best state if it has changed since last taken (to be written), else None."""
        if not self.unsaved:
            return None
        self.unsaved, self._lent = False, True
        return self.ckpt


def full_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """Full checkpoints to resume from: model_final_full.pt first (a finished run), then the periodic ones, newest first."""
    final_full = Path(checkpoint_dir) / FINAL_FULL
    periodic = [p for _, p in reversed(periodic_checkpoints(checkpoint_dir))]
    return [final_full, *periodic] if final_full.exists() else periodic


def find_resume_checkpoint(
    checkpoint_dir: str | Path, resume: str, expected: GPTConfig, report: Callable[[str], None] = print
) -> tuple[Path, dict] | None:
    """The checkpoint to resume from: `never`, `auto` (the newest full one that loads), or a path.

    In `auto` mode model_final_full.pt comes first: once written, the run is over (it holds the
    best step's state, which may be older than the last periodic file). Then the periodic files,
    newest first. A file that does not load or fails its checks is reported and the next one
    tried. A folder that holds checkpoints none of which fits, or `never` in a folder that holds
    any, is a CheckpointError: starting over there would overwrite another run's files. A path
    given explicitly must be good. Files are read whole (not memory-mapped): the optimizer state
    must not stay backed by a file that rotation later deletes.
    """
    existing = sorted(Path(checkpoint_dir).glob("model_*.pt")) if Path(checkpoint_dir).is_dir() else []
    if resume == "never":
        if existing:
            raise CheckpointError(checkpoint_dir, f"holds {len(existing)} checkpoint(s) of an earlier run, which starting "
                                  "over would overwrite; move them or choose another checkpoint_dir")
        return None
    if resume != "auto":
        ckpt = load_checkpoint(resume, kind=FULL, mmap=False)
        check_architecture(resume, ckpt, expected)
        return Path(resume), ckpt
    candidates = full_checkpoints(checkpoint_dir)
    for path in candidates:
        try:
            ckpt = load_checkpoint(path, kind=FULL, mmap=False)
            check_architecture(path, ckpt, expected)
        except CheckpointError as e:
            report(f"skipping {e}")
            continue
        return path, ckpt
    if candidates:
        raise CheckpointError(checkpoint_dir, f"holds {len(candidates)} full checkpoint(s), none of which fits this "
                              "model; starting over would overwrite them: move them or choose another checkpoint_dir")
    return None
