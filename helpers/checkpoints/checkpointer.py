"""A run's checkpoints as one object: the pieces a full checkpoint holds, and the folder it keeps them in.

The notebook builds one Checkpointer in its Resume cell, registering the run's stateful pieces
once (torchtitan's pattern), and from then on only says when: `keep_best()` at a new best,
`save()` when the save clock says so, `finish()` when training ends, `close()` at the very end.
What it carries out is the policy of docs/checkpoints.md; the modules beside this one each do a
part: storage (reading and writing files), policy (which files, rotation), resume (choosing and
repairing), writer (writing in the background) and lock (one run per folder). Only process 0
writes: on the others, the methods that write do nothing.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import torch

from helpers.checkpoints.format import FULL, MODEL, make_checkpoint, tensor_identity, to_deployment, unwrap_model
from helpers.checkpoints.lock import FolderLock, hold_folder
from helpers.checkpoints.policy import (
    BEST,
    BEST_FULL,
    FINAL,
    FINAL_FULL,
    PeriodicFiles,
    file_size_mb,
    periodic_checkpoints,
    periodic_path,
    save_best,
    save_final,
)
from helpers.checkpoints.resume import choose_resume, final_files_missing
from helpers.checkpoints.storage import load_checkpoint, load_weights, save_checkpoint
from helpers.checkpoints.writer import BackgroundWriter, snapshot
from helpers.config import TrainConfig
from helpers.errors import CheckpointError, OutputError
from helpers.fileio import (
    check_writable,
    finish_replacements,
    free_bytes,
    no_space,
    remove_stale_temporaries,
)
from helpers.training.distributed import print0
from helpers.training.rng import capture_rng_state, restore_rng_state
from helpers.training.run_state import RunState


def gb(n: float) -> str:
    """A size in GB (10^9 bytes), for messages."""
    return f"{n / 1e9:.2f} GB"


def _state_of(piece: object) -> object:
    return piece.get_state() if isinstance(piece, torch.Generator) else piece.state_dict()


def _restore(piece: object, state: object) -> None:
    if isinstance(piece, torch.Generator):
        piece.set_state(state)
    else:
        piece.load_state_dict(state)


class TrainingState:
    """What a full checkpoint holds of a run: each registered piece's state, the random generators', the run state.

    pieces maps a checkpoint key to the object whose state goes there: the model under
    `model_state_dict` (its plain weights, whatever wraps it), and under any other key an object
    with state_dict() and load_state_dict() (a torch.Generator: get_state() and set_state()). The
    run state's saved fields go beside them under their own names (helpers.training.run_state).
    optimizer_settings (weight decay, betas) are this run's: they win over a resumed file's.
    """

    def __init__(
        self, pieces: dict, run: RunState, config: dict, data: dict, optimizer_settings: dict | None = None
    ) -> None:
        self.pieces, self.run, self.config, self.data = pieces, run, config, data
        self.optimizer_settings = optimizer_settings or {}

    @property
    def model(self) -> torch.nn.Module:
        """The model whose weights the checkpoints hold."""
        return self.pieces[MODEL]

    def state_dict(self) -> dict:
        """Everything needed to resume from this moment, as a full checkpoint (tensors are references, not copies)."""
        run = self.run.state_dict()
        pieces = {key: _state_of(piece) for key, piece in self.pieces.items() if key != MODEL}
        return make_checkpoint(
            FULL,
            step=run.pop("step"),
            model=self.model,
            loss=run.pop("loss"),
            config=self.config,
            **pieces,
            rng_state=capture_rng_state(),
            data=self.data,
            **run,
        )

    def load_state_dict(self, path: str | Path, ckpt: dict, finished_stays: bool = True) -> None:
        """Put back everything ckpt (read from path) holds; a piece whose state it lacks keeps its own.

        A file with only the five original keys (docs/checkpoints.md) leaves the rest at their
        start values (resumed, less exactly). A finished run stays finished, its whole history
        kept for the chart, unless finished_stays is False (a file named to train on from).
        """
        load_weights(self.model, path, ckpt)
        for key, piece in self.pieces.items():
            state = ckpt.get(key)
            if key == MODEL or state is None or (isinstance(state, dict) and not state):  # a disabled GradScaler's: {}
                continue
            _restore(piece, state)
            if isinstance(piece, torch.optim.Optimizer):
                for group in piece.param_groups:
                    group.update(self.optimizer_settings)  # the learning rate is set at every step
        if "rng_state" in ckpt:
            restore_rng_state(ckpt["rng_state"])
        self.run.load_state_dict(ckpt)
        if self.run.stop_reason is None or not finished_stays:
            self.run.train_on()


# This process's open checkpointers: a run started again in the same kernel closes the last one's first.
_open: weakref.WeakSet[Checkpointer] = weakref.WeakSet()


class Checkpointer:
    """A run's checkpoint folder, taken, resumed from, written and given up by one object (see the module's docstring).

    pieces and run are what a full checkpoint holds (TrainingState). Building it takes the folder
    (made, tried with a test file, locked, and what interrupted writes left finished or swept),
    chooses the file to resume from with every check (helpers.checkpoints.resume) and restores
    everything from it, saying which.
    """

    def __init__(
        self, checkpoint_dir: str | Path, cfg: TrainConfig, data_id: dict, pieces: dict, run: RunState, main: bool
    ) -> None:
        for old in list(_open):
            old.close()  # the last run's write ends before its temporary files are swept
        _open.add(self)
        self.folder, self.main, self.run = Path(checkpoint_dir), main, run
        settings = dict(weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2))
        self.state = TrainingState(pieces, run, cfg.to_dict(), data_id, settings)
        model = unwrap_model(self.state.model)
        expected = model.config
        weights = sum({tensor_identity(t): t.nbytes for t in model.state_dict().values()}.values())  # tied: once
        self.deploy_bytes, self.full_bytes = weights, 3 * weights  # a full file: the weights and AdamW's two moments
        self.periodic = PeriodicFiles(self.folder, cfg.keep_last, expected)
        self.writer = BackgroundWriter(background=cfg.async_save)
        self.best: dict | None = None  # the best step's full state, a CPU copy: written at the next save
        self._best_unsaved = self._best_lent = False  # lent: handed to the write that may still run
        self._periodic_copy: dict | None = None  # the last periodic copy, whose memory the next one reuses
        self.read_only, self.lock = self._take_folder()
        resumed = choose_resume(self.folder, cfg, expected, data_id, self.read_only, main)
        if resumed:
            path, ckpt = resumed
            self.state.load_state_dict(path, ckpt, finished_stays=cfg.resume == "auto")
            print0(f"resumed from {path} at step {run.step} (best validation loss {run.best_val_loss:.4f})")
        else:
            print0("starting from scratch")
        self.start_step = run.step

    def _take_folder(self) -> tuple[str | None, FolderLock | None]:
        """Why the folder cannot be written (or None), and the lock: process 0 tries, locks and sweeps it."""
        if not self.main:
            return None, None
        read_only = check_writable(self.folder)
        if read_only:  # a finished run there can still be read
            return read_only, None
        lock = hold_folder(self.folder)
        for target in finish_replacements(self.folder):
            print0(f"finished replacing {target.name}, which an interrupted write had left half-way")
        for stale in remove_stale_temporaries(self.folder):
            print0(f"removed {stale.name}, left by an interrupted write")
        self._check_space()
        return None, lock

    def _check_space(self) -> None:
        """Warn, in one line, when the folder has less room than the policy will keep there.

        At most: keep_last periodic files and one more being written (the new one is whole before
        an old one goes), the best and final full files, and their deployment forms. The files
        already there count as room: the run replaces or rotates them.
        """
        keep_last = self.periodic.keep_last
        need = (keep_last + 3) * self.full_bytes + 2 * self.deploy_bytes
        free = free_bytes(self.folder)
        if free + sum(p.stat().st_size for p in self.folder.glob("model_*.pt")) < need:
            print0(
                f"WARNING: {self.folder}: {gb(free)} free, but this run's checkpoints may need {gb(need)} "
                f"({keep_last} periodic files of {gb(self.full_bytes)}, one more being written, the best and final "
                "pairs); a full disk stops the saves: set GPT2_KEEP_LAST=1, free some space, or keep the "
                "checkpoints on this runtime (USE_DRIVE off)"
            )

    @property
    def writable(self) -> bool:
        """Whether this process writes the folder: process 0, where the folder can be written."""
        return self.main and not self.read_only

    def keep_best(self) -> None:
        """Keep this moment's full state in memory as the best (0.1 s for GPT-2 124M); the next save writes it."""
        if not self.writable:
            return
        reuse = not (self._best_lent and self.writer.busy())  # never copy into what a write is reading
        self.best = snapshot(self.state.state_dict(), into=self.best if reuse else None)
        self._best_unsaved, self._best_lent = True, False

    def save(self) -> None:
        """Write model_step_{step}.pt in the background, the best pair just before it if the best changed; rotate."""
        if not self.writable:
            return
        self.lock.check()  # a run whose folder another run took over stops here
        self.writer.wait()  # the last write is done: its copies may be reused
        state = self.state.state_dict()
        if self.writer.background:  # training goes on changing the tensors while they are written
            state = self._periodic_copy = snapshot(state, into=self._periodic_copy)
        best = self.best if self._best_unsaved else None
        self._best_unsaved, self._best_lent = False, best is not None
        self.writer.submit(lambda: self._write(state, best, "training goes on with the best state in memory"))
        self.run.save_clock.saved()

    def _write(self, state: dict, best: dict | None, then: str) -> None:
        """The best pair (if given), then the periodic file; on a full disk, one line saying so and what comes next."""
        try:
            if best is not None:
                save_best(self.folder, best)  # first: any file a run resumes from has its best on disk
            self.periodic.save(state)
        except OSError as e:
            if not no_space(e):
                raise
            if best is not None:
                self._best_unsaved = True  # written with the next save
            need = self.deploy_bytes if Path(e.filename or "").name == BEST else self.full_bytes
            print0(
                f"{e.filename}: not written, no space left ({gb(need)} needed, {gb(free_bytes(self.folder))} free); "
                f"the checkpoints before it are intact; {then}"
            )

    def finish(self) -> dict | None:
        """End the session's saving: the final pair if training is over, else a file to go on from (and None).

        The final pair is the best step's state, with the whole run's history and why it stopped;
        the model then holds its weights, and its checkpoint is returned. A finished run resumed
        without training rewrites only a file of its final pair that is missing.
        """
        self.writer.wait()
        if self.run.stop_reason is None:
            if self.writable and not periodic_path(self.folder, self.run.step).exists():
                best = self.best if self._best_unsaved else None
                self._write(self.state.state_dict(), best, "run again with space to go on from the last one")
            self._free_copies()
            return None
        final = None
        if self.run.step > self.start_step:  # trained in this session
            final = dict(self._best_state(), stop_reason=self.run.stop_reason, history=self.run.history)
        elif final_files_missing(self.folder):  # finished before; a file of the pair was lost
            final = load_checkpoint(self.folder / FINAL_FULL, kind=FULL, mmap=False)
        if final is not None:
            for path in self._write_final(final):
                print0(f"saved {path} ({file_size_mb(path):,.1f} MB)")
        self._free_copies()
        final_ckpt = load_checkpoint(self.folder / FINAL)
        load_weights(self.state.model, self.folder / FINAL, final_ckpt)
        return final_ckpt

    def _write_final(self, final: dict) -> tuple[Path, ...]:
        """The final pair; on a full disk, room made first (the periodic files it supersedes), then once more.

        If it still does not fit, the run stops with one line (an OutputError), the best weights
        written alone where they fit (model_final.pt is a third of a full file).
        """
        for room_made in (False, True):
            try:
                return save_final(self.folder, final)
            except OSError as e:
                if not no_space(e):
                    raise
                if room_made or not self._make_room():
                    raise self._does_not_fit(final, e) from None

    def _make_room(self) -> bool:
        """Delete the periodic files the final pair supersedes: all this run can resume from but the newest.

        The newest stays until the pair is whole: a run that cannot write the pair resumes from it.
        Damaged and foreign files are left alone, as rotation leaves them. Whether any went.
        """
        files = [path for step, path in periodic_checkpoints(self.folder) if step <= self.run.step]
        superseded = [path for path in files if self.periodic.usable(path)][:-1]
        for path in superseded:
            self.periodic.delete(path)
        if superseded:
            names = ", ".join(path.name for path in superseded)
            print0(f"no space for the final pair: deleted {names}, which it supersedes")
        return bool(superseded)

    def _does_not_fit(self, final: dict, error: OSError) -> OutputError:
        """Why the run stops, in one line, after writing the best weights alone where they fit."""
        free = free_bytes(self.folder)
        weights = "not even the best weights fit"
        for path in (self.folder / FINAL, Path.cwd() / f"{self.folder.name}-{FINAL}"):
            try:
                save_checkpoint(to_deployment(final), path)
                weights = f"the best weights alone are in {path}"
                break
            except OSError as e:
                if not no_space(e):
                    raise
        return OutputError(
            error.filename or self.folder,
            f"not written, no space left for the final pair ({gb(self.full_bytes + 2 * self.deploy_bytes)} needed, "
            f"{gb(free)} free); {weights}; free some space and run again to write the pair",
        )

    def _best_state(self) -> dict:
        """The best step's full state: from memory, else from model_best_full.pt (written before a resume).

        With no best step (no evaluation gave a finite loss) this moment's state is all there is.
        """
        best_step = self.run.best_step
        if best_step is None:
            return self.state.state_dict()
        if self.best is not None and self.best["step"] == best_step:
            return self.best
        path = self.folder / BEST_FULL
        ckpt = load_checkpoint(path, kind=FULL, mmap=False)
        if ckpt["step"] != best_step:
            raise CheckpointError(path, f"holds step {ckpt['step']}, not the best step {best_step}")
        return ckpt

    def _free_copies(self) -> None:
        """Let the CPU copies go (3 GB for GPT-2 124M): nothing is written from them any more."""
        self.best = self._periodic_copy = None
        self._best_unsaved = False

    def close(self) -> None:
        """Wait for the last write (raising its error), free the copies and give the folder up."""
        _open.discard(self)
        try:
            self.writer.wait()
        finally:
            self._free_copies()
            if self.lock:
                self.lock.release()
                self.lock = None
