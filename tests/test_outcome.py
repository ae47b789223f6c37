"""The training outcome: early stopping, and a final pair that is the best step, also across a resume.

The ci model over-fits a few hundred training tokens within a few epochs, so its validation loss
has a minimum that early stopping must find (settings OVERFIT, run by the overfit_run fixture).
"""

import pytest
import torch

from conftest import OVERFIT, run_script
from helpers.checkpoints.policy import periodic_checkpoints
from helpers.checkpoints.storage import load_checkpoint

pytestmark = pytest.mark.slow  # every test runs the notebook's .py


def assert_same_tensors(a, b, path="ckpt"):
    """Equal structure, equal numbers, equal tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_tensors(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


TRAINING_STATE = (
    "model_state_dict",
    "optimizer_state_dict",
    "scaler_state_dict",
    "rng_state",
    "sampler_state",
    "step",
    "loss",
    "val_loss",
    "best_val_loss",
    "best_step",
)


def test_early_stop_after_patience_evaluations(overfit_run):
    checkpoint_dir, summary = overfit_run
    val = load_checkpoint(checkpoint_dir / "model_final_full.pt")["history"]["val"]
    best_step, best_loss = min(val[1:], key=lambda sv: sv[1])
    after_best = [loss for step, loss in val if step > best_step]
    assert summary["stop_reason"].startswith("early stop")
    assert summary["steps"] < OVERFIT["max_steps"] and summary["steps"] == val[-1][0]
    assert len(after_best) == OVERFIT["patience"] and min(after_best) >= best_loss  # it did over-fit, then stopped
    assert (summary["best_step"], summary["best_val_loss"]) == (best_step, best_loss)
    assert summary["final_step"] == best_step and summary["final_val_loss"] == best_loss
    assert summary["epochs"] > 3


def test_final_pair_is_the_best_steps_state_bit_for_bit(overfit_run):
    checkpoint_dir, summary = overfit_run
    best_step = summary["best_step"]
    # the clock saved a periodic file after every step: the one of the best step is the reference
    assert [s for s, _ in periodic_checkpoints(checkpoint_dir)] == list(range(1, summary["steps"]))
    at_best = load_checkpoint(checkpoint_dir / f"model_step_{best_step}.pt")
    final_full = load_checkpoint(checkpoint_dir / "model_final_full.pt")
    for key in TRAINING_STATE:
        assert_same_tensors(final_full[key], at_best[key], key)
    for name in ("model_final.pt", "model_best.pt"):
        deploy = load_checkpoint(checkpoint_dir / name)
        assert "optimizer_state_dict" not in deploy and deploy["step"] == best_step
        assert_same_tensors(deploy["model_state_dict"], at_best["model_state_dict"], name)


def test_stopped_after_the_best_step_and_resumed_gives_the_same_final_pair(overfit_run, tmp_path):
    """The best state is no longer in memory after a resume: it comes from model_best_full.pt."""
    reference_dir, summary = overfit_run
    stop_at = summary["best_step"] + 2
    assert stop_at < summary["steps"]
    first = run_script(tmp_path, stop_after_steps=stop_at, **OVERFIT)
    assert f"stopped at step {stop_at}" in first.stdout
    assert load_checkpoint(tmp_path / "model_best_full.pt")["step"] == summary["best_step"]
    second = run_script(tmp_path, **OVERFIT)  # a new process: nothing of the first is in memory
    assert f"at step {stop_at}" in second.stdout and "early stop" in second.stdout
    reference = load_checkpoint(reference_dir / "model_final_full.pt")
    resumed = load_checkpoint(tmp_path / "model_final_full.pt")
    for key in (*TRAINING_STATE, "history", "early_stopping", "stop_reason"):
        assert_same_tensors(resumed[key], reference[key], key)
    assert_same_tensors(load_checkpoint(tmp_path / "model_final.pt")["model_state_dict"], reference["model_state_dict"])
    # and once finished, running again trains nothing and rewrites nothing
    before = (tmp_path / "model_final.pt").stat().st_mtime_ns
    third = run_script(tmp_path, **OVERFIT)
    assert "training ended: early stop" in third.stdout
    assert (tmp_path / "model_final.pt").stat().st_mtime_ns == before
