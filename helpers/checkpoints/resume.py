"""Choosing what a run resumes from, and repairing what that choice relies on.

find_resume_checkpoint picks the file: `auto`, the newest full checkpoint that loads and fits
(model_final_full.pt first: a finished run); `never`; or a path. choose_resume then refuses a
file made on other text and makes sure the best pair it relies on is sound (check_best),
repairing the pair, or choosing an earlier file, where it is not. Every process of a run chooses
the same file; only process 0 repairs.
"""

from __future__ import annotations

from pathlib import Path

from helpers.checkpoints.format import FULL, check_architecture
from helpers.checkpoints.policy import BEST, BEST_FULL, FINAL, FINAL_FULL, periodic_checkpoints, save_best
from helpers.checkpoints.storage import load_checkpoint, load_resumable
from helpers.config import TrainConfig
from helpers.data import check_same_data
from helpers.errors import CheckpointError, OutputError
from helpers.model import GPTConfig
from helpers.training.distributed import print0


def find_resume_checkpoint(checkpoint_dir: str | Path, resume: str, expected: GPTConfig) -> tuple[Path, dict] | None:
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
    final_full = Path(checkpoint_dir) / FINAL_FULL
    candidates = [final_full] if final_full.exists() else []
    candidates += [path for _, path in reversed(periodic_checkpoints(checkpoint_dir))]  # newest first
    for path in candidates:
        try:
            ckpt = load_resumable(path, expected)
        except CheckpointError as e:
            print0(f"skipping {e}")
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
        print0(f"{problem}; rewriting the best pair from {exact.name}, which holds the best step")
        if repair:
            save_best(directory, ckpt if exact == resume_path else load_resumable(exact, expected))
        return resume_path, ckpt
    for earlier in sorted((s for s in periodic if s < best_step), reverse=True):
        try:
            earlier_ckpt = load_resumable(periodic[earlier], expected)
        except CheckpointError:
            continue
        print0(
            f"{problem}; RESUMING FROM {periodic[earlier].name} (step {earlier}) INSTEAD of step {step}, to train "
            f"the best step {best_step} again and make its state anew"
        )
        return periodic[earlier], earlier_ckpt
    weights_problem = _best_problem(directory / BEST, expected, best_step, kind=None)
    if weights_problem is None:
        best = load_checkpoint(directory / BEST, mmap=False)  # not mapped: save_best replaces the file
        note = f"weights of step {best_step} (model_best.pt), training state of step {step} ({resume_path.name})"
        print0(
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
    print0(
        f"{problem}; {weights_problem}: THE BEST STATE (STEP {best_step}) IS LOST; the final pair will be the best "
        f"evaluation from step {step} on"
    )
    return resume_path, dict(ckpt, best_step=None, best_val_loss=float("inf"))


def choose_resume(
    checkpoint_dir: Path, cfg: TrainConfig, expected: GPTConfig, data_id: dict, read_only: str | None, main: bool
) -> tuple[Path, dict] | None:
    """The file to resume from and its checkpoint, every check passed and the best pair sound; None: from scratch.

    Never a file made on other text, and the text is checked before anything in the folder is
    repaired. A read-only folder (read_only says why) is fine for a finished run, which is only
    read; training must write.
    """
    resumed = find_resume_checkpoint(checkpoint_dir, cfg.resume, expected)
    if resumed:
        check_same_data(*resumed, data_id, cfg.data_url, cfg.resume)
    if resumed and not read_only:
        resumed = check_best(checkpoint_dir, *resumed, expected, repair=main)
    finished = (
        resumed and resumed[1].get("stop_reason") and cfg.resume == "auto" and not final_files_missing(checkpoint_dir)
    )
    if read_only and not finished:
        raise OutputError(
            checkpoint_dir, f"cannot be written ({read_only}); make it writable or choose another checkpoint_dir"
        )
    return resumed
