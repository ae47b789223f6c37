"""The run state's one home: what a full checkpoint holds, restores and strips comes from one definition."""

import dataclasses
import math
import random
import re

import torch

from conftest import REPO, TINY, trained_tiny
from helpers.checkpoints.checkpointer import TrainingState
from helpers.checkpoints.format import DEPLOYMENT, REQUIRED, to_deployment, training_only
from helpers.config import make_config
from helpers.training.run_state import FACT, RESUME, RESUME_ONLY, RunState
from helpers.training.stopping import EarlyStopping

FORMAT_KEYS = {"format", "format_version", "kind", "model_args"}  # make_checkpoint's own
# What the pieces of a run put in a full checkpoint beside the summary's keys: the GradScaler, the
# data sampler, the random generators (documented in docs/checkpoints.md's Keys table).
PIECES = ("optimizer_state_dict", "scaler_state_dict", "sampler_state", "rng_state")


def a_run_part_way() -> RunState:
    """A run state after some training: every saved field away from its start value."""
    run = RunState(early_stopping=EarlyStopping(patience=3, min_delta=0.01))
    for step, (loss, val) in enumerate([(9.0, 8.5), (7.0, 7.2), (6.0, 7.4)], start=1):
        run.step = step
        run.log_train(loss)
        run.log_val(val)
    return run


def pieces(seed: int):
    model, optimizer, _ = trained_tiny(seed=seed)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    sampler = torch.Generator().manual_seed(seed)
    return model, optimizer, scaler, sampler


def full_checkpoint(model, optimizer, scaler, sampler, run, config, data) -> dict:
    """The full checkpoint of these pieces, registered as the notebook registers them."""
    registered = dict(
        model_state_dict=model, optimizer_state_dict=optimizer, scaler_state_dict=scaler, sampler_state=sampler
    )
    return TrainingState(registered, run, config, data).state_dict()


def restore_checkpoint(path, ckpt, model, optimizer, scaler, sampler, run, optimizer_settings, finished_stays=True):
    """Restore ckpt into these pieces, registered as the notebook registers them."""
    registered = dict(
        model_state_dict=model, optimizer_state_dict=optimizer, scaler_state_dict=scaler, sampler_state=sampler
    )
    TrainingState(registered, run, {}, {}, optimizer_settings).load_state_dict(path, ckpt, finished_stays)


def test_every_saved_field_has_a_fate_and_the_log_methods_keep_them():
    run = a_run_part_way()
    assert (run.step, run.loss, run.val_loss, run.best_step, run.best_val_loss) == (3, 6.0, 7.4, 2, 7.2)
    assert run.history == {"train": [[1, 9.0], [2, 7.0], [3, 6.0]], "val": [[1, 8.5], [2, 7.2], [3, 7.4]]}
    assert run.early_stopping.bad_evals == 1 and run.why_stop(make_config("ci", env={})) is None
    saved = [f for f in dataclasses.fields(RunState) if f.metadata.get("saved")]
    assert all(f.metadata in (FACT, RESUME) for f in saved)
    assert set(run.state_dict()) == {f.name for f in saved}
    assert "early_stopping" in RESUME_ONLY  # only resuming needs the patience count
    assert not {"step", "loss", "val_loss", "best_val_loss", "best_step", "history", "stop_reason"} & set(RESUME_ONLY)


def test_full_checkpoint_holds_the_summary_keys_the_pieces_and_the_run_state_and_nothing_else():
    model, optimizer, scaler, sampler = pieces(0)
    run = a_run_part_way()
    ckpt = full_checkpoint(model, optimizer, scaler, sampler, run, {"preset": "test"}, {"text_sha256": "ab"})
    expected = set(REQUIRED["full"]) | FORMAT_KEYS | set(PIECES) | set(run.state_dict()) | {"data"}
    assert set(ckpt) == expected
    assert ckpt["early_stopping"] == {"best": 7.2, "bad_evals": 1} and ckpt["best_step"] == 2
    assert (ckpt["step"], ckpt["loss"]) == (3, 6.0)  # the summary's keys, from the run state


def test_deployment_drops_exactly_the_training_only_keys():
    model, optimizer, scaler, sampler = pieces(0)
    ckpt = full_checkpoint(model, optimizer, scaler, sampler, a_run_part_way(), {}, {"text_sha256": "ab"})
    deploy = to_deployment(ckpt)
    assert deploy["kind"] == DEPLOYMENT
    assert set(ckpt) - set(deploy) == set(PIECES) | set(RESUME_ONLY)
    assert "early_stopping" not in deploy  # resumable state, which leaked into deployment files before
    for fact in ("history", "stop_reason", "best_step", "best_val_loss", "val_loss", "data"):
        assert deploy[fact] == ckpt[fact], fact  # the facts of how the model was made stay


def test_restore_puts_every_piece_back_as_it_was():
    model, optimizer, scaler, sampler = pieces(0)
    run = a_run_part_way()
    random.seed(5)
    torch.manual_seed(5)
    sampler.manual_seed(9)
    ckpt = full_checkpoint(model, optimizer, scaler, sampler, run, {}, {})
    expected_draws = (random.random(), torch.rand(3), torch.rand(2, generator=sampler))

    model2, optimizer2, scaler2, sampler2 = pieces(1)  # other weights, other optimizer state
    run2 = RunState.start(make_config("ci", env={}))
    random.seed(0)
    torch.manual_seed(0)
    restore_checkpoint("x.pt", ckpt, model2, optimizer2, scaler2, sampler2, run2, {"weight_decay": 0.5})
    assert run2.state_dict() == run.state_dict()
    assert run2.early_stopping.patience == make_config("ci", env={}).patience  # this run's setting, its count
    for key, value in model.state_dict().items():
        assert torch.equal(model2.state_dict()[key], value), key
    moments = [s["exp_avg"] for s in optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a, s["exp_avg"]) for a, s in zip(moments, optimizer2.state_dict()["state"].values()))
    assert all(g["weight_decay"] == 0.5 for g in optimizer2.param_groups)  # this run's settings win
    draws = (random.random(), torch.rand(3), torch.rand(2, generator=sampler2))
    assert draws[0] == expected_draws[0] and all(torch.equal(a, b) for a, b in zip(draws[1:], expected_draws[1:]))


def test_a_finished_run_stays_finished_unless_trained_on_from_a_named_file():
    model, optimizer, scaler, sampler = pieces(0)
    run = a_run_part_way()
    run.stop_reason = "early stop"
    ckpt = dict(full_checkpoint(model, optimizer, scaler, sampler, run, {}, {}), step=2)  # the best step's file
    for finished_stays, reason, val_steps in ((True, "early stop", [1, 2, 3]), (False, None, [1, 2])):
        again = RunState()
        restore_checkpoint("x.pt", ckpt, *pieces(1), again, {}, finished_stays)
        assert again.stop_reason == reason and [s for s, _ in again.history["val"]] == val_steps


def test_a_file_with_only_the_summary_keys_resumes_from_start_values():
    model, optimizer, scaler, sampler = pieces(0)
    ckpt = {"step": 7, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()}
    ckpt.update(loss=2.5, config=TINY.to_dict())
    run = RunState()
    restore_checkpoint("summary.pt", ckpt, *pieces(1), run, {})
    assert (run.step, run.loss, run.best_step, run.history) == (7, 2.5, None, {"train": [], "val": []})
    assert math.isinf(run.best_val_loss) and run.early_stopping.bad_evals == 0


def test_docs_keys_table_agrees_with_what_a_deployment_file_drops():
    """docs/checkpoints.md's Keys table: a key it says only full files hold is one a deployment file drops.

    A key not yet in the table is no contradiction (adding a run-state field stays one edit); the
    notebook's pieces' keys must be there.
    """
    rows = [line.split("|") for line in (REPO / "docs" / "checkpoints.md").read_text().splitlines()]
    where = {key: row[2].strip() for row in rows if len(row) > 3 for key in re.findall(r"`(\w+)`", row[1])}
    assert set(PIECES) <= where.keys()
    for key, files in where.items():
        assert (files == "full") == training_only(key), f"docs say {key!r} is in {files!r} files"


def test_a_piece_registered_later_is_saved_restored_and_stripped():
    """Adding a resumable piece is one entry where the pieces are registered: a learning-rate scheduler, say."""
    model, optimizer, scaler, sampler = pieces(0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    registered = dict(model_state_dict=model, optimizer_state_dict=optimizer, scaler_state_dict=scaler)
    ckpt = TrainingState(dict(registered, lr_scheduler_state_dict=scheduler), a_run_part_way(), {}, {}).state_dict()
    assert ckpt["lr_scheduler_state_dict"]["last_epoch"] == 3
    assert "lr_scheduler_state_dict" not in to_deployment(ckpt)  # training state, by its name
    model2, optimizer2, scaler2, _ = pieces(1)
    scheduler2 = torch.optim.lr_scheduler.StepLR(optimizer2, step_size=1, gamma=0.5)
    registered2 = dict(model_state_dict=model2, optimizer_state_dict=optimizer2, scaler_state_dict=scaler2)
    restored = TrainingState(dict(registered2, lr_scheduler_state_dict=scheduler2), RunState(), {}, {})
    restored.load_state_dict("x.pt", ckpt)
    assert scheduler2.state_dict() == scheduler.state_dict() and scheduler2.get_last_lr() == [1e-3 / 8]
