"""A full disk or Drive (tests/small_disk.py): warned of at the start, met at each kind of save without
losing anything written before, and at the end made room for; a run that cannot write its final pair
stops in one line, its best weights written where they fit, and a rerun with space ends bit for bit."""

import pytest
import small_disk
import torch
from test_resume import assert_same_weights

from conftest import REPO, run_script, sitecustomize_env, tiny_checkpointer
from helpers.checkpoints.policy import periodic_checkpoints
from helpers.checkpoints.storage import load_checkpoint
from helpers.errors import OutputError

MB = 1_000_000
FULL, DEPLOY = 19_700_000, 6_500_000  # about the tiny model's files: full (weights + AdamW), deployment


def files_in(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "run.lock"}


def steps_in(folder):
    return [s for s, _ in periodic_checkpoints(folder)]


@pytest.fixture
def small(tmp_path, monkeypatch):
    """small(capacity): the checkpoint folder tmp_path/ck on a disk of capacity bytes, until the test ends."""

    def install(capacity: int):
        small_disk.install(tmp_path / "ck", capacity, monkeypatch)
        return tmp_path / "ck"

    return install


def trained_to(files, step: int, best: bool = False) -> None:
    """The run at step, its weights changed (as training changes them), kept as the best if best."""
    with torch.no_grad():
        files.state.model.transformer.wte.weight.add_(0.01)
    files.run.step = step
    if best:
        files.run.log_val(10.0 - step)
        files.keep_best()


def test_the_start_warns_in_one_line_when_the_policy_will_not_fit(small, capsys):
    folder = small(60 * MB)
    tiny_checkpointer(folder).close()
    lines = [line for line in capsys.readouterr().out.splitlines() if "WARNING" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"WARNING: {folder}: 0.06 GB free, but this run's checkpoints may need 0.11 GB")
    assert "GPT2_KEEP_LAST=1" in lines[0] and "free some space" in lines[0] and "USE_DRIVE off" in lines[0]
    tiny_checkpointer(folder.parent / "roomy").close()  # a disk with room says nothing
    assert "WARNING" not in capsys.readouterr().out


def test_periodic_and_best_saves_that_do_not_fit_lose_nothing_and_training_goes_on(small, capsys):
    folder = small(70 * MB)  # the best pair and two periodic files fit, a third file does not
    files = tiny_checkpointer(folder, keep_last=3)
    trained_to(files, 1, best=True)
    files.save()
    trained_to(files, 2)
    files.save()
    capsys.readouterr()
    before = files_in(folder)
    trained_to(files, 3)
    files.save()  # the periodic file alone
    trained_to(files, 4, best=True)
    files.save()  # the best pair first
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 2 and files_in(folder) == before and steps_in(folder) == [1, 2]
    assert said[0].startswith(f"{folder / 'model_step_3.pt'}: not written, no space left (0.02 GB needed, 0.00 GB")
    assert said[1].startswith(f"{folder / 'model_best_full.pt'}: not written, no space left (0.02 GB needed")
    assert all("checkpoints before it are intact; training goes on with the best state in memory" in s for s in said)
    assert files.best["step"] == 4  # still in memory, and written once there is room
    (folder / "model_step_1.pt").unlink()
    trained_to(files, 5)
    files.save()
    files.writer.wait()
    assert load_checkpoint(folder / "model_best_full.pt")["step"] == 4 and steps_in(folder) == [2, 5]
    files.close()


def test_the_final_save_makes_room_from_the_periodic_files_it_supersedes(small, capsys):
    folder = small(90 * MB)
    files = tiny_checkpointer(folder, keep_last=2)
    for step in (1, 2):
        trained_to(files, step, best=step == 1)
        files.save()
    trained_to(files, 3, best=True)
    files.run.stop_reason = "reached max_steps (3)"
    capsys.readouterr()
    final = files.finish()
    said = capsys.readouterr().out.splitlines()
    assert said[0] == "no space for the final pair: deleted model_step_1.pt, which it supersedes"
    assert final["step"] == 3 and load_checkpoint(folder / "model_final_full.pt")["step"] == 3
    assert steps_in(folder) == [2]  # the newest stays: superseded too, but kept as the policy keeps it
    files.close()


def test_a_final_pair_that_cannot_fit_stops_in_one_line_with_the_best_weights_written(small, capsys):
    folder = small(60 * MB)  # one periodic file and the best pair: the final full file cannot fit
    files = tiny_checkpointer(folder)
    trained_to(files, 1, best=True)
    files.save()
    files.writer.wait()
    before = files_in(folder)
    trained_to(files, 2, best=True)
    files.run.stop_reason = "reached max_steps (2)"
    with pytest.raises(OutputError) as info:
        files.finish()
    message = str(info.value)
    assert message.startswith(f"{folder / 'model_final_full.pt'}: not written, no space left for the final pair")
    assert f"the best weights alone are in {folder / 'model_final.pt'}" in message and "\n" not in message
    weights = load_checkpoint(folder / "model_final.pt")
    assert weights["kind"] == "deployment" and weights["step"] == 2
    assert {name: data for name, data in files_in(folder).items() if name != "model_final.pt"} == before
    files.close()


@pytest.mark.slow  # the notebook's .py, twice
def test_a_run_out_of_space_at_the_end_resumes_with_space_bit_for_bit(ci_run, tmp_path):
    """The ci run on a 60 MB disk: step 5's files fit, nothing after; with space, the rerun ends as ci_run did."""
    reference_dir, _ = ci_run
    folder = tmp_path / "ck"
    env = dict(
        sitecustomize_env(tmp_path / "site", small_disk.SITECUSTOMIZE),
        SMALL_DISK_TESTS=str(REPO / "tests"),
        SMALL_DISK_DIR=str(folder),
        SMALL_DISK_BYTES=str(60 * MB),
    )
    full = run_script(folder, check=False, extra_env=env)
    assert full.returncode == 1, full.stderr[-3000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {folder / 'model_final_full.pt'}: not written, no space left for the final pair")
    assert f"the best weights alone are in {folder / 'model_final.pt'}" in last
    assert "model_best_full.pt: not written, no space left" in full.stdout and "Traceback" not in full.stderr
    assert steps_in(folder) == [5] and not (folder / "model_final_full.pt").exists()
    again = run_script(folder)  # space again
    assert f"resumed from {folder / 'model_step_5.pt'} at step 5" in again.stdout
    for name in ("model_final.pt", "model_final_full.pt", "model_best.pt"):
        assert_same_weights(reference_dir / name, folder / name)
    assert (
        load_checkpoint(folder / "model_final_full.pt")["history"]
        == load_checkpoint(reference_dir / "model_final_full.pt")["history"]
    )
