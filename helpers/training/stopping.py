"""When to stop training: patience on the validation loss (early stopping)."""

from __future__ import annotations

import math
from dataclasses import dataclass


def improves(val_loss: float, best: float, min_delta: float = 0.0) -> bool:
    """True if val_loss is finite and lower than best by more than min_delta (NaN and inf never improve)."""
    return math.isfinite(val_loss) and val_loss < best - min_delta


@dataclass
class EarlyStopping:
    """Counts evaluations since the validation loss last fell by more than min_delta.

    Its state goes into every full checkpoint, so a resumed run counts on where it left off.
    """

    patience: int  # evaluations without improvement before stopping; 0 never stops
    min_delta: float = 0.0
    best: float = math.inf  # the loss at the last improvement that counted
    bad_evals: int = 0

    def update(self, val_loss: float) -> None:
        """Count one evaluation."""
        if improves(val_loss, self.best, self.min_delta):
            self.best, self.bad_evals = val_loss, 0
        else:
            self.bad_evals += 1

    @property
    def should_stop(self) -> bool:
        """True once patience evaluations in a row have not improved."""
        return self.patience > 0 and self.bad_evals >= self.patience

    def state_dict(self) -> dict:
        """The counter's state, as plain numbers."""
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict) -> None:
        """Continue counting from a saved state."""
        self.best, self.bad_evals = float(state["best"]), int(state["bad_evals"])
