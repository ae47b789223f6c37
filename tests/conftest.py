"""Shared fixtures: the prepared data, and running the notebook's .py as a script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAKE_COLAB = Path(__file__).resolve().parent / "fake_colab"  # the stand-in google.colab
SCRIPT = REPO / "notebooks" / "train_gpt2_124m_colab.py"
NOTEBOOK = REPO / "notebooks" / "train_gpt2_124m_colab.ipynb"


def script_env(checkpoint_dir: Path, **settings: object) -> dict:
    """The environment for one script run: the ci preset, the session's data, these settings."""
    env = dict(os.environ)
    env["GPT2_CHECKPOINT_DIR"] = str(checkpoint_dir)
    env["PYTHONHASHSEED"] = "0"
    # The ci model is tiny: one thread per process is faster than two fighting over 2 cores.
    env["OMP_NUM_THREADS"] = "1"
    for name, value in settings.items():
        env[f"GPT2_{name.upper()}"] = str(value)
    return env


def run_script(checkpoint_dir: Path, timeout: float = 300, check: bool = True, python_args: tuple = (),
               extra_env: dict | None = None, **settings: object) -> subprocess.CompletedProcess:
    """Run the notebook's .py to completion on the ci preset; fail the test if it fails.

    python_args go before the script, e.g. ("-m", "torch.distributed.run", "--nproc_per_node=2").
    """
    env = dict(script_env(checkpoint_dir, **settings), **(extra_env or {}))
    proc = subprocess.run([sys.executable, *python_args, str(SCRIPT)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        pytest.fail(f"script exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The session's tiny Shakespeare, tokenised."""
    from helpers.data import SHAKESPEARE_URL, prepare_data

    path = Path(os.environ["GPT2_DATA_DIR"])
    prepare_data(path, os.environ.get("GPT2_DATA_URL", SHAKESPEARE_URL))
    return path


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One full ci-preset run of the notebook's .py, shared by the tests that only read its files."""
    checkpoint_dir = tmp_path_factory.mktemp("ci-run")
    return checkpoint_dir, run_script(checkpoint_dir)


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """The stand-in google.colab (tests/fake_colab), importable in this process; its log in tmp_path."""
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(FAKE_COLAB))
    monkeypatch.setenv("FAKE_COLAB_LOG", str(tmp_path / "colab.log"))
    monkeypatch.setenv("FAKE_DRIVE", str(tmp_path / "cloud"))
    import google.colab

    yield google.colab
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        del sys.modules[name]  # the stand-in's modules; monkeypatch then puts back any real ones
