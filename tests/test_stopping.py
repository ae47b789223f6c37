"""Early stopping and the save clock, as the training loop uses them."""

import math

import pytest

from helpers.training.run_state import SaveClock
from helpers.training.stopping import EarlyStopping, improves


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinite_losses_never_improve(bad):
    assert not improves(bad, math.inf)
    assert not improves(bad, 5.0)
    stopping = EarlyStopping(patience=2)
    stopping.update(bad)
    assert stopping.best == math.inf and stopping.bad_evals == 1  # counted as an evaluation that did not improve
    stopping.update(bad)
    assert stopping.should_stop


def test_patience_counts_evaluations_without_improvement():
    stopping = EarlyStopping(patience=3)
    for loss in (5.0, 4.0, 4.5, 4.2):
        stopping.update(loss)
    assert (stopping.best, stopping.bad_evals, stopping.should_stop) == (4.0, 2, False)
    stopping.update(3.9)  # an improvement starts the count again
    assert (stopping.best, stopping.bad_evals) == (3.9, 0)
    for loss in (4.0, 4.1, 4.2):
        stopping.update(loss)
    assert stopping.should_stop


def test_improvements_smaller_than_min_delta_do_not_reset_patience():
    stopping = EarlyStopping(patience=2, min_delta=0.1)
    stopping.update(5.0)
    stopping.update(4.95)  # better, but by less than min_delta
    assert (stopping.best, stopping.bad_evals) == (5.0, 1)
    stopping.update(4.85)  # 0.15 below the last counted improvement
    assert (stopping.best, stopping.bad_evals) == (4.85, 0)


def test_patience_zero_never_stops_and_state_round_trips():
    never = EarlyStopping(patience=0)
    for _ in range(100):
        never.update(math.nan)
    assert not never.should_stop
    stopping = EarlyStopping(patience=4, min_delta=0.01)
    for loss in (3.0, 3.5, 3.6):
        stopping.update(loss)
    resumed = EarlyStopping(patience=4, min_delta=0.01)
    resumed.load_state_dict(stopping.state_dict())
    assert resumed == stopping


def test_save_clock_by_steps_or_by_minutes():
    now = [1000.0]
    clock = SaveClock(save_every=100, save_every_minutes=10, clock=lambda: now[0])
    assert not clock.due(1)
    assert clock.due(100)  # the step count
    now[0] += 599
    assert not clock.due(101)
    now[0] += 1  # ten minutes since the clock started
    assert clock.due(102)
    clock.saved()
    assert not clock.due(103)
    now[0] += 600
    assert clock.due(104)


def test_save_clock_off_when_minutes_is_zero():
    now = [0.0]
    clock = SaveClock(save_every=5, save_every_minutes=0, clock=lambda: now[0])
    now[0] += 1e9
    assert not clock.due(3) and clock.due(5)
