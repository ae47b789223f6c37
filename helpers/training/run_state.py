"""A training run's state in one place: what the loop has counted and decided, saved and resumed.

The model, the optimizer, the GradScaler and the data sampler keep their own state dicts, and
helpers.training.rng the random generators'. RunState holds the rest: the step, the losses, the
best step and its loss, the history and the samples at each new best, early stopping and why the
run stopped. Each field's metadata says what becomes of it:

- FACT: saved in every full checkpoint, restored on resume, and kept in deployment files: a fact
  of how the model was made;
- RESUME: saved and restored, but dropped from deployment files: only resuming needs it;
- neither: this session's bookkeeping (the save clock), never saved.

helpers.checkpoints.checkpointer saves these fields beside the pieces' states in every full
checkpoint and restores them, and helpers.checkpoints.format strips a full checkpoint by the same
metadata (training_only). So a field added here, with its metadata, is saved, resumed and
stripped with no other edit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Callable

from helpers.config import TrainConfig
from helpers.training.stopping import EarlyStopping, improves

FACT = {"saved": True, "deployment": True}
RESUME = {"saved": True, "deployment": False}


class SaveClock:
    """Says when a periodic save is due: every save_every steps, or save_every_minutes after the last."""

    def __init__(
        self, save_every: int, save_every_minutes: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.save_every, self.seconds, self.clock = save_every, save_every_minutes * 60, clock
        self.last = clock()

    def due(self, step: int) -> bool:
        """True if a periodic save is due after this step."""
        return step % self.save_every == 0 or (self.seconds > 0 and self.clock() - self.last >= self.seconds)

    def saved(self) -> None:
        """Start the clock again: a save was just made."""
        self.last = self.clock()


def _empty_history() -> dict:
    return {"train": [], "val": []}


@dataclass
class RunState:
    """Where a training run stands; `state_dict()` is what a full checkpoint holds of it under these names."""

    step: int = field(default=0, metadata=FACT)  # optimizer steps done
    loss: float = field(default=math.nan, metadata=FACT)  # the training loss at the last log (`loss`)
    val_loss: float | None = field(default=None, metadata=FACT)  # the last evaluation's
    best_val_loss: float = field(default=math.inf, metadata=FACT)
    best_step: int | None = field(default=None, metadata=FACT)  # None until an evaluation gives a finite loss
    history: dict = field(default_factory=_empty_history, metadata=FACT)  # {"train"|"val": [[step, loss], ...]}
    stop_reason: str | None = field(default=None, metadata=FACT)  # why training ended, once it has
    samples: list = field(default_factory=list, metadata=FACT)  # [[step, val_loss, text], ...]: one at each new best
    early_stopping: EarlyStopping = field(default_factory=lambda: EarlyStopping(0), metadata=RESUME)
    save_clock: SaveClock = field(default_factory=lambda: SaveClock(save_every=1))

    @classmethod
    def start(cls, cfg: TrainConfig) -> RunState:
        """A run at step 0, with cfg's patience and save clock."""
        return cls(
            early_stopping=EarlyStopping(cfg.patience, cfg.min_delta),
            save_clock=SaveClock(cfg.save_every, cfg.save_every_minutes),
        )

    def state_dict(self) -> dict:
        """The saved fields under their names, as plain data (a field with a state_dict() gives that)."""
        out = {}
        for f in fields(self):
            if f.metadata.get("saved"):
                value = getattr(self, f.name)
                out[f.name] = value.state_dict() if hasattr(value, "state_dict") else value
        return out

    def load_state_dict(self, state: dict) -> None:
        """Take the saved fields that state holds; a field it lacks (an older or another program's file) stays."""
        for f in fields(self):
            if f.metadata.get("saved") and f.name in state:
                value = getattr(self, f.name)
                if hasattr(value, "load_state_dict"):
                    value.load_state_dict(state[f.name])
                else:
                    setattr(self, f.name, state[f.name])

    def train_on(self) -> None:
        """Train on from this step: forget why the run stopped, and the history after the step (made again)."""
        self.stop_reason = None
        self.history = {split: [p for p in points if p[0] <= self.step] for split, points in self.history.items()}
        self.samples = [s for s in self.samples if s[0] <= self.step]

    def log_train(self, loss: float) -> None:
        """Record the training loss of this step."""
        self.loss = loss
        self.history["train"].append([self.step, loss])

    def log_val(self, val_loss: float) -> bool:
        """Record an evaluation of this step (counted by early stopping); True if it is the best so far."""
        self.val_loss = val_loss
        self.history["val"].append([self.step, val_loss])
        self.early_stopping.update(val_loss)
        if not improves(val_loss, self.best_val_loss):
            return False
        self.best_val_loss, self.best_step = val_loss, self.step
        return True

    def why_stop(self, cfg: TrainConfig) -> str | None:
        """Why training should end now, or None to go on."""
        if self.step >= cfg.max_steps:
            return f"reached max_steps ({cfg.max_steps})"
        if cfg.target_loss > 0 and self.best_val_loss <= cfg.target_loss:
            return f"validation loss reached target_loss ({cfg.target_loss})"
        if self.early_stopping.should_stop:
            return (
                f"early stop: {self.early_stopping.bad_evals} evaluations without an improvement "
                f"of more than {cfg.min_delta} (patience {cfg.patience})"
            )
        return None


# The run state's keys that deployment files drop (helpers.checkpoints.format.training_only).
RESUME_ONLY = tuple(f.name for f in fields(RunState) if f.metadata.get("saved") and not f.metadata["deployment"])
