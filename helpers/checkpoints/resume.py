"""Starting a session on a checkpoint folder: take the folder, then choose the file to resume from.

The Resume cell in two calls. Only process 0 writes: it tries the folder with a test file, takes
its lock (helpers.checkpoints.lock) and finishes or sweeps what interrupted writes left. Every
process then chooses the same file (helpers.checkpoints.policy.find_resume_checkpoint), checks
that it was made on this text and that the best pair it relies on is sound (check_best).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from helpers.checkpoints.fileio import check_writable, finish_replacements, remove_stale_temporaries
from helpers.checkpoints.lock import FolderLock, hold_folder
from helpers.checkpoints.policy import check_best, final_files_missing, find_resume_checkpoint
from helpers.checkpoints.writer import finish_writes
from helpers.config import TrainConfig
from helpers.data import check_same_data
from helpers.errors import OutputError
from helpers.model import GPTConfig


@dataclass
class CheckpointFolder:
    """A run's checkpoint folder as this process holds it."""

    path: Path
    main: bool  # process 0, which alone writes there
    read_only: str | None  # why it cannot be written (a finished run can still be read), or None
    lock: FolderLock | None  # process 0's hold on it, until the Finish cell releases it


def take_folder(checkpoint_dir: Path, main: bool, report: Callable[[str], None] = print) -> CheckpointFolder:
    """Make and try the folder, take its lock, finish or sweep what interrupted writes left (process 0 only)."""
    finish_writes()  # a re-run in the same kernel: the last run's write must end before its temporary is swept
    if not main:
        return CheckpointFolder(Path(checkpoint_dir), False, None, None)
    read_only = check_writable(checkpoint_dir)
    lock = None if read_only else hold_folder(checkpoint_dir, report=report)
    if lock:
        for target in finish_replacements(checkpoint_dir):
            report(f"finished replacing {target.name}, which an interrupted write had left half-way")
        for stale in remove_stale_temporaries(checkpoint_dir):
            report(f"removed {stale.name}, left by an interrupted write")
    return CheckpointFolder(Path(checkpoint_dir), True, read_only, lock)


def choose_resume(
    folder: CheckpointFolder,
    cfg: TrainConfig,
    model_config: GPTConfig,
    data_id: dict,
    report: Callable[[str], None] = print,
) -> tuple[Path, dict] | None:
    """The file to resume from and its checkpoint, every check passed, or None to start from scratch.

    Never a file made on other text, and the text is checked before anything in the folder is
    repaired. A read-only folder is fine for a finished run (only read); training must write.
    """
    resumed = find_resume_checkpoint(folder.path, cfg.resume, model_config, report=report)
    if resumed:
        check_same_data(*resumed, data_id, cfg.data_url, cfg.resume, report=report)
    if resumed and not folder.read_only:
        resumed = check_best(folder.path, *resumed, model_config, report=report, repair=folder.main)
    finished = (
        resumed and resumed[1].get("stop_reason") and cfg.resume == "auto" and not final_files_missing(folder.path)
    )
    if folder.read_only and not finished:
        raise OutputError(
            folder.path, f"cannot be written ({folder.read_only}); make it writable or choose another checkpoint_dir"
        )
    return resumed
