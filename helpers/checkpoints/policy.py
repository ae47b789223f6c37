"""The checkpoint policy (docs/checkpoints.md): periodic, best and final files, and resuming.

- periodic `model_step_{step}.pt`: full, every `save_every` steps, the newest `keep_last` kept;
- best `model_best.pt` (deployment) and `model_best_full.pt` (full, never rotated): the lowest
  validation loss so far, kept in memory as it happens and written out at each periodic save,
  just before the periodic file (so any file a run resumes from has its best on disk);
- final `model_final.pt` (deployment) and `model_final_full.pt` (full): the best step's state,
  written when training ends, whatever ended it.

A periodic save is due every `save_every` steps, or `save_every_minutes` after the last one
(helpers.training.run_state.SaveClock).
A new file is always in place before an old one is deleted, and rotation counts only the files
this run can resume from: a damaged file, or another model's, is reported and left alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from helpers.checkpoints.fileio import discard
from helpers.checkpoints.format import (
    FULL,
    CheckpointError,
    check_architecture,
    load_checkpoint,
    model_config_of,
    save_checkpoint,
    to_deployment,
)
from helpers.checkpoints.lock import check_held
from helpers.checkpoints.writer import snapshot
from helpers.model import GPTConfig
from helpers.training.run_state import RunState

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


def load_resumable(path: str | Path, expected: GPTConfig, mmap: bool = False) -> dict:
    """A full checkpoint of the expected model at path, or a CheckpointError saying why it is not one."""
    ckpt = load_checkpoint(path, kind=FULL, mmap=mmap)
    check_architecture(path, ckpt, expected)
    return ckpt


# Files by (path, size, mtime): those found resumable (each is checked once, not at every save)
# and those found unusable (each is reported once).
_resumable: set[tuple[str, int, int, tuple]] = set()
_reported: set[tuple[str, int, int, tuple]] = set()


def _file_key(path: Path, expected: GPTConfig) -> tuple[str, int, int, tuple]:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), -1, -1, ())
    return (str(path), stat.st_size, stat.st_mtime_ns, tuple(expected.to_dict().items()))


def rotate(
    checkpoint_dir: str | Path,
    keep_last: int,
    expected: GPTConfig,
    newest: Path | None = None,
    report: Callable[[str], None] = print,
) -> list[Path]:
    """Keep the newest keep_last periodic checkpoints this run can resume from, the newest always; return the deleted.

    A file that does not load or is another model's is reported (once) and neither counted nor
    deleted: counting it would delete good files, deleting it would destroy what the user may
    want to look at. Files of later steps than newest (another run's, or those ahead of a run
    resumed from an older file) are left alone too. Each file is checked once, memory-mapped
    (the pickle and the zip directory: what a truncated or foreign file fails), so a check costs
    little even for 1.5 GB on Drive.
    """
    if keep_last < 1:
        raise ValueError("keep_last must be at least 1")
    newest_step = next((s for s, p in periodic_checkpoints(checkpoint_dir) if p == newest), None)
    usable = []
    for step, path in reversed(periodic_checkpoints(checkpoint_dir)):  # newest first
        if path == newest:
            continue
        key = _file_key(path, expected)
        if key not in _resumable:
            try:
                load_resumable(path, expected, mmap=True)
            except CheckpointError as e:
                if key not in _reported:
                    _reported.add(key)
                    report(f"rotation leaves {e} (not counted among the {keep_last} kept)")
                continue
            _resumable.add(key)
        if newest_step is None or step < newest_step:
            usable.append(path)
    old = usable[keep_last - 1 :] if newest is not None else usable[keep_last:]
    for path in old:
        discard(path)  # on Drive, truncated first: its trash would keep 1.5 GB for 30 days
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
    check_held(checkpoint_dir)
    directory = Path(checkpoint_dir)
    full = save_checkpoint(full_ckpt, directory / FINAL_FULL)
    deploy = to_deployment(full_ckpt)
    return save_checkpoint(deploy, directory / FINAL), full, save_checkpoint(deploy, directory / BEST)


def save_periodic(
    checkpoint_dir: str | Path, full_ckpt: dict, keep_last: int, best_ckpt: dict | None = None
) -> tuple[Path, list[Path]]:
    """Write the best pair (if given), then model_step_{step}.pt, then rotate; return the new path and the deleted."""
    check_held(checkpoint_dir)  # a run whose folder another run took over writes nothing more
    if best_ckpt is not None:
        save_best(checkpoint_dir, best_ckpt)
    path = save_checkpoint(full_ckpt, periodic_path(checkpoint_dir, full_ckpt["step"]))
    return path, rotate(checkpoint_dir, keep_last, model_config_of(path, full_ckpt), newest=path)


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

    def full_state(self, checkpoint_dir: str | Path, best_step: int | None, now: Callable[[], dict]) -> dict:
        """The best step's full state: from memory, else from model_best_full.pt (found before a resume).

        With no best step (no evaluation gave a finite loss) the state of now() is all there is.
        """
        if best_step is None:
            return now()
        if self.ckpt is not None and self.ckpt["step"] == best_step:
            return self.ckpt
        path = Path(checkpoint_dir) / BEST_FULL
        ckpt = load_checkpoint(path, kind=FULL, mmap=False)
        if ckpt["step"] != best_step:
            raise CheckpointError(path, f"holds step {ckpt['step']}, not the best step {best_step}")
        return ckpt


def save_at_end(
    checkpoint_dir: str | Path,
    run: RunState,
    best: BestState,
    now: Callable[[], dict],
    keep_last: int,
    trained: bool,
    report: Callable[[str], None] = print,
) -> Path | None:
    """What a session leaves when its loop ends: the final pair if training is over, else a file to go on from.

    The final pair is the best step's state with the whole run's history and why it stopped. A
    finished run resumed without training (trained False) rewrites only a file of its final pair
    that is missing. Returns model_final.pt's path, or None while the run is not over.
    """
    directory = Path(checkpoint_dir)
    if run.stop_reason is None:
        if not periodic_path(directory, run.step).exists():
            save_periodic(directory, now(), keep_last, best.take_unsaved())
        return None
    if trained:
        final = dict(best.full_state(directory, run.best_step, now), stop_reason=run.stop_reason, history=run.history)
    elif final_files_missing(directory):
        final = load_checkpoint(directory / FINAL_FULL, kind=FULL, mmap=False)  # finished; a file was lost
    else:
        final = None  # a finished run, all in place
    if final is not None:
        for path in save_final(directory, final):
            report(f"saved {path} ({file_size_mb(path):,.1f} MB)")
    return directory / FINAL


def full_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """Full checkpoints to resume from: model_final_full.pt first (a finished run), then periodic ones, newest first."""
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
            raise CheckpointError(
                checkpoint_dir,
                f"holds {len(existing)} checkpoint(s) of an earlier run, which starting "
                "over would overwrite; move them or choose another checkpoint_dir",
            )
        return None
    if resume != "auto":
        return Path(resume), load_resumable(resume, expected)
    candidates = full_checkpoints(checkpoint_dir)
    for path in candidates:
        try:
            ckpt = load_resumable(path, expected)
        except CheckpointError as e:
            report(f"skipping {e}")
            continue
        return path, ckpt
    if candidates:
        raise CheckpointError(
            checkpoint_dir,
            f"holds {len(candidates)} full checkpoint(s), none of which fits this "
            "model; starting over would overwrite them: move them or choose another checkpoint_dir",
        )
    return None


def final_files_missing(checkpoint_dir: str | Path) -> list[str]:
    """The files of a finished run's final pair (and model_best.pt) that are not in checkpoint_dir."""
    return [name for name in (FINAL, FINAL_FULL, BEST) if not (Path(checkpoint_dir) / name).exists()]


def _best_problem(
    path: Path, expected: GPTConfig, best_step: int, kind: str | None = FULL, ahead_of: int | None = None
) -> str | None:
    """Why the file at path is not the best step's state (or weights), or None if it is.

    A best of a step after ahead_of (the resume step) is fine too: a crash came between the best
    pair and the periodic file, and training passes that step again before the run can end.
    """
    try:
        ckpt = load_checkpoint(path, kind=kind)
        check_architecture(path, ckpt, expected)
    except CheckpointError as e:
        return str(e)
    if ckpt["step"] == best_step or (ahead_of is not None and ckpt["step"] > ahead_of):
        return None
    return f"{path}: holds step {ckpt['step']}, not the best step {best_step}"


def check_best(
    checkpoint_dir: str | Path,
    resume_path: Path,
    ckpt: dict,
    expected: GPTConfig,
    report: Callable[[str], None] = print,
    repair: bool = True,
) -> tuple[Path, dict]:
    """At resume, make sure model_best_full.pt is the best step's state; if not, say so and take the way out.

    The final pair is built from model_best_full.pt when the best step is older than the resume
    step, so a damaged one must be found now, not after the remaining steps. The ways out, best first:
    1. a periodic file of the best step itself, or the resume file if it is the best step: it is
       the best state; the pair is rewritten from it now;
    2. the newest periodic file before the best step: training resumes from there instead and
       passes the best step again, making its state anew (bit for bit where training is
       deterministic, as on the CPU);
    3. model_best.pt, if it holds the best step: its weights with the resume file's training state
       become the best state, written now and marked as such (best_state_note);
    4. nothing holds the best step any more: the best is forgotten, and the final pair will be the
       best evaluation from the resume step on.
    Returns the file to resume from and its checkpoint (changed in case 4). With repair=False
    (the other processes of a distributed run) it decides the same but writes nothing.
    """
    directory, step, best_step = Path(checkpoint_dir), ckpt["step"], ckpt.get("best_step")
    if best_step is None or best_step > step:
        return resume_path, ckpt
    problem = _best_problem(directory / BEST_FULL, expected, best_step, ahead_of=step)
    if problem is None:
        return resume_path, ckpt
    periodic = dict(periodic_checkpoints(directory))
    exact = resume_path if best_step == step else periodic.get(best_step)
    if exact is not None and _best_problem(exact, expected, best_step) is None:
        report(f"{problem}; rewriting the best pair from {exact.name}, which holds the best step")
        if repair:
            save_best(directory, ckpt if exact == resume_path else load_resumable(exact, expected))
        return resume_path, ckpt
    for earlier in sorted((s for s in periodic if s < best_step), reverse=True):
        try:
            earlier_ckpt = load_resumable(periodic[earlier], expected)
        except CheckpointError:
            continue
        report(
            f"{problem}; RESUMING FROM {periodic[earlier].name} (step {earlier}) INSTEAD of step {step}, to train "
            f"the best step {best_step} again and make its state anew"
        )
        return periodic[earlier], earlier_ckpt
    weights_problem = _best_problem(directory / BEST, expected, best_step, kind=None)
    if weights_problem is None:
        best = load_checkpoint(directory / BEST, mmap=False)  # not mapped: save_best replaces the file
        note = f"weights of step {best_step} (model_best.pt), training state of step {step} ({resume_path.name})"
        report(
            f"{problem}; no file before the best step is left to train it again: THE FINAL PAIR WILL HOLD THE "
            f"{note.upper()}, so model_final_full.pt resumes with step {step}'s optimizer state"
        )
        if repair:
            rebuilt = dict(
                ckpt,
                model_state_dict=best["model_state_dict"],
                step=best_step,
                loss=best["loss"],
                val_loss=best.get("val_loss"),
                best_state_note=note,
            )
            save_best(directory, rebuilt)
        return resume_path, ckpt
    report(
        f"{problem}; {weights_problem}: THE BEST STATE (STEP {best_step}) IS LOST; the final pair will be the best "
        f"evaluation from step {step} on"
    )
    return resume_path, dict(ckpt, best_step=None, best_val_loss=float("inf"))
