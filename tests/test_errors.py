"""How errors reach the user (issue 19, item 7): the project's own as one line, in a script run of the
notebook's .py and in a notebook kernel; anything unexpected with its traceback; Ctrl-C as a note
to run again, which then resumes."""

import signal
import subprocess
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO, SCRIPT, run_script, script_env
from helpers.errors import INTERRUPTED, CheckpointError, SettingError, short_errors


def raised(error):
    """(type, error, traceback) of error, raised and caught."""
    try:
        raise error
    except BaseException as e:
        return type(e), e, e.__traceback__


@pytest.fixture
def script_hook(monkeypatch):
    """sys.excepthook as short_errors() sets it outside IPython (put back after the test)."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    short_errors()
    return sys.excepthook


@pytest.mark.parametrize(
    "error,shown",
    [
        (
            SettingError("GPT2_LEARNING_RATE=nan: must be a finite number"),
            "error: GPT2_LEARNING_RATE=nan: must be a finite number",
        ),
        (CheckpointError("ck/model_step_5.pt", "file is empty"), "error: ck/model_step_5.pt: file is empty"),
        (KeyboardInterrupt(), INTERRUPTED),
    ],
)
def test_a_script_shows_our_errors_and_ctrl_c_as_one_line(script_hook, capsys, error, shown):
    script_hook(*raised(error))
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines() == [shown]


def test_a_script_shows_an_unexpected_error_with_its_traceback(script_hook, capsys):
    script_hook(*raised(ZeroDivisionError("division by zero")))
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.strip().endswith("ZeroDivisionError: division by zero")
    assert "in raised" in err  # the frames are there


@pytest.mark.slow
def test_a_notebook_kernel_shows_our_errors_as_one_line_and_still_stops(tmp_path):
    """Under IPython (Jupyter, Colab) the cell fails as before, so Run all stops, but shows one line."""
    setup = (
        f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
        "from helpers.errors import SettingError, short_errors\nshort_errors()"
    )
    cells = [setup, "raise SettingError('GPT2_MAX_STEPS=0: must be at least 1')", "1 / 0"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(
        nb, timeout=120, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    ours, other = (cell.outputs for cell in nb.cells[1:])
    assert [(o.output_type, o.ename, o.traceback) for o in ours] == [
        ("error", "SettingError", ["SettingError: GPT2_MAX_STEPS=0: must be at least 1"])
    ]
    assert other[0].ename == "ZeroDivisionError" and len(other[0].traceback) > 1  # IPython's own display


@pytest.mark.slow
def test_a_bad_setting_stops_the_script_with_one_line(tmp_path):
    """Settings errors once arrived as 8 to 30 lines of traceback; GPT2_LEARNING_RATE=nan was accepted."""
    proc = run_script(tmp_path, check=False, learning_rate="nan")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: GPT2_LEARNING_RATE=nan: must be a finite number"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_during_training_ends_with_sigint_and_the_next_run_resumes(tmp_path):
    """SIGINT between checkpoints: one line, the process ends by SIGINT (a shell's 130), and the rerun resumes."""
    settings = dict(max_steps=200, save_every=10)  # the first periodic file at step 10, the next 10 steps later
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT)],
        env=script_env(tmp_path, **settings),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    end = time.monotonic() + 120
    while not (tmp_path / "model_step_10.pt").exists():  # written atomically: there means complete
        assert proc.poll() is None and time.monotonic() < end, "no periodic checkpoint"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # as Ctrl-C does, while step 11 or so trains
    _, err = proc.communicate(timeout=120)
    # Python ends a Ctrl-C'd program by SIGINT (a shell reports 128 + 2 = 130), so a calling script stops too
    assert proc.returncode == -signal.SIGINT
    assert "Traceback" not in err and err.rstrip("\n").split("\n")[-1] == INTERRUPTED
    again = run_script(tmp_path, stop_after_steps=1, **settings)
    assert f"resumed from {tmp_path / 'model_step_10.pt'} at step 10" in again.stdout
    assert "stopped at step 11 of 200" in again.stdout and "skipping" not in again.stdout
