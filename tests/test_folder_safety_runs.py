"""The checkpoint folder kept safe, run by run: Ctrl-C in the final save, a second run on a held
folder, a folder that cannot be written. The notebook's .py, run as separate processes on the ci preset."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import readonly_fs
from test_resume import assert_same_weights, paused_env, wait_for

from conftest import REPO, SCRIPT, run_script, script_env, sitecustomize_env
from helpers.checkpoints.lock import LOCK_NAME
from helpers.checkpoints.storage import load_checkpoint
from helpers.errors import INTERRUPTED, TERMINATED
from helpers.fileio import HOST, TMP_MARK

pytestmark = pytest.mark.slow  # every test runs the notebook's .py


def start(env: dict) -> subprocess.Popen:
    """The notebook's .py started under env, its output piped as text."""
    return subprocess.Popen(
        [sys.executable, str(SCRIPT)], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_interrupt_inside_the_final_save_then_rerun(ci_run, tmp_path):
    """Ctrl-C while model_final_full.pt is written once ended in `RuntimeError: ... unexpected pos` (exit 1)."""
    reference_dir, _ = ci_run
    env = dict(script_env(tmp_path), PYTHONUNBUFFERED="1")
    proc = start(paused_env(tmp_path / "x", env, "model_final_full.pt"))
    assert wait_for(tmp_path / "x" / "in-a-write", proc), proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    # ended by SIGINT (a shell's 130) with the one line of a Ctrl-C, not a RuntimeError's traceback
    assert proc.returncode == -signal.SIGINT and stderr.rstrip().endswith(INTERRUPTED), stderr[-3000:]
    assert "Traceback" not in stderr and "RuntimeError" not in stderr
    assert not [p for p in tmp_path.iterdir() if TMP_MARK in p.name] and not (tmp_path / "model_final_full.pt").exists()
    again = run_script(tmp_path)  # resumes from the last periodic file and builds the final pair
    assert "at step 15" in again.stdout
    for name in ("model_final.pt", "model_final_full.pt", "model_best.pt"):
        assert_same_weights(reference_dir / name, tmp_path / name)
    assert (
        load_checkpoint(tmp_path / "model_final_full.pt")["history"]
        == load_checkpoint(reference_dir / "model_final_full.pt")["history"]
    )


def terminated(proc: subprocess.Popen, folder: Path) -> None:
    """SIGTERM proc; it must end as SIGTERM ends a run: status 143, one line, no temporary file, the lock let go."""
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and stderr.rstrip().endswith(TERMINATED), stderr[-3000:]
    assert "Traceback" not in stderr and "RuntimeError" not in stderr
    assert not [p for p in folder.iterdir() if TMP_MARK in p.name] and not (folder / LOCK_NAME).exists()


def test_sigterm_in_training_and_in_a_save_ends_cleanly_and_the_next_run_resumes(ci_run, tmp_path):
    """SIGTERM (kill, Jupyter's restart, torchrun stopping its workers) once ended the run at once (exit 143 from
    the signal itself), leaving the lock for the next run to take over and a temporary file to sweep."""
    reference_dir, _ = ci_run
    env = dict(script_env(tmp_path), PYTHONUNBUFFERED="1")
    in_training = start(env)
    for line in in_training.stdout:  # training is under way, step 5's checkpoint written or being written
        if line.startswith("step 5 (epoch"):
            break
    terminated(in_training, tmp_path)
    in_a_save = start(paused_env(tmp_path / "x", env, "model_step_15.pt"))
    assert wait_for(tmp_path / "x" / "in-a-write", in_a_save), in_a_save.communicate()
    terminated(in_a_save, tmp_path)
    assert not (tmp_path / "model_step_15.pt").exists()  # the write abandoned, the file before it intact
    again = run_script(tmp_path)
    assert "at step 10" in again.stdout and "TAKING OVER" not in again.stdout and "removed" not in again.stdout
    for name in ("model_final.pt", "model_final_full.pt", "model_best.pt"):
        assert_same_weights(reference_dir / name, tmp_path / name)
    assert (
        load_checkpoint(tmp_path / "model_final_full.pt")["history"]
        == load_checkpoint(reference_dir / "model_final_full.pt")["history"]
    )


def test_a_second_run_on_the_folder_refuses_then_takes_over_from_a_dead_one(ci_run, tmp_path):
    """Two runs on one folder once trained into the same files, and the second's sweep deleted the first's writes."""
    reference_dir, _ = ci_run
    env = dict(script_env(tmp_path), PYTHONUNBUFFERED="1")
    first = subprocess.Popen(
        [sys.executable, str(SCRIPT)],
        env=paused_env(tmp_path / "x", env),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(tmp_path / "x" / "in-a-write", first)  # training, inside a checkpoint write
        writing = {p.name: p.stat().st_size for p in tmp_path.iterdir() if TMP_MARK in p.name}
        second = run_script(tmp_path, check=False)
        assert second.returncode != 0
        last = second.stderr.strip().splitlines()[-1]
        assert f"{tmp_path.absolute()}: in use by another run (process {first.pid} on host {HOST}, started" in last
        assert "wait for it to finish or stop it, or choose another checkpoint_dir" in last
        assert "step 0" not in second.stdout  # refused before training
        assert {
            p.name: p.stat().st_size for p in tmp_path.iterdir() if TMP_MARK in p.name
        } == writing  # its write untouched
    finally:
        first.kill()
        first.wait()
    third = run_script(tmp_path)  # the first run is gone: its lock and its temporary are taken over and swept
    assert f"TAKING OVER the lock of {tmp_path.absolute()} from process {first.pid} on host {HOST}" in third.stdout
    assert all(f"removed {name}" in third.stdout for name in writing)
    assert_same_weights(reference_dir / "model_final.pt", tmp_path / "model_final.pt")
    assert not (tmp_path / LOCK_NAME).exists()  # given up at the end


def test_a_folder_that_cannot_be_written_is_refused_before_the_first_step(ci_run, tmp_path):
    """A read-only checkpoint_dir, or one under a file, failed only at the first save, naming a temporary file."""
    (tmp_path / "a-file").write_text("")
    under_a_file = run_script(tmp_path / "a-file" / "ckpt", check=False)
    assert under_a_file.returncode != 0 and "step 0" not in under_a_file.stdout
    assert (
        under_a_file.stderr.strip()
        .splitlines()[-1]
        .endswith(f"{tmp_path / 'a-file' / 'ckpt'}: cannot be created (Not a directory); choose another checkpoint_dir")
    )
    read_only = tmp_path / "ro"
    read_only.mkdir()
    refused = run_script(read_only, check=False, extra_env=read_only_env(tmp_path, read_only))
    assert refused.returncode != 0 and "step 0" not in refused.stdout
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"{read_only}: cannot be written (Read-only file system); make it writable or choose another checkpoint_dir"
        )
    )
    assert list(read_only.iterdir()) == []
    # a finished run in a read-only folder opens: it is only read (run_summary.json once failed)
    finished, _ = ci_run
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in finished.iterdir()}
    reopened = run_script(finished, extra_env=read_only_env(tmp_path, finished))
    assert "training ended" in reopened.stdout and "the final model: train loss" in reopened.stdout
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in finished.iterdir()} == before


def read_only_env(tmp_path: Path, folder: Path) -> dict:
    """Environment variables under which a child process finds folder read-only (tests/readonly_fs.py)."""
    return dict(
        sitecustomize_env(tmp_path / "read-only", readonly_fs.SITECUSTOMIZE),
        READ_ONLY_TESTS=str(Path(__file__).parent),
        READ_ONLY_DIR=str(folder),
    )
