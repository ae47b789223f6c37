"""The project's errors: each names the file, folder or setting it is about, and says the problem in one line."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import TracebackType

INTERRUPTED = "interrupted: run it again to resume from the last checkpoint saved"
TERMINATED = "terminated (SIGTERM): run it again to resume from the last checkpoint saved"


class PathError(Exception):
    """A problem with one file or folder; str() is "PATH: PROBLEM", one line."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


class CheckpointError(PathError):
    """A checkpoint (or model folder) that cannot be used."""


class OutputError(PathError):
    """An output path that cannot be written as asked: not empty, the input itself, not a folder."""


class HubError(PathError):
    """The Hugging Face Hub did not give or take what was asked; path is the repository or folder."""


class DataError(PathError):
    """The training text, its token files or meta.json cannot be used; path is the file, folder or data_url."""


class SettingError(ValueError):
    """A setting with a value that cannot work; str() is "GPT2_NAME=VALUE: PROBLEM", one line."""


class Terminated(SystemExit):
    """SIGTERM, raised wherever the program is, as Ctrl-C raises KeyboardInterrupt (see short_errors).

    A SystemExit: nothing catches it by mistake, and the process ends with status 143 (128 + 15, a
    shell's code for SIGTERM) once a write in progress is finished or abandoned and the lock let go.
    """

    def __init__(self, code: int = 128 + signal.SIGTERM) -> None:
        super().__init__(code)


# The errors this project raises itself, each already one line that says what to change: a script
# shows them as that line, where a traceback would only bury it.
OURS = (PathError, SettingError)


def describe(error: BaseException, limit: int = 200) -> str:
    """'TypeName: first line of the message' (at most limit characters), for errors raised by other libraries."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:limit]}" if lines else type(error).__name__


def _close_progress_bars() -> None:
    """Finish tqdm's open bars now, so that they are not drawn again at exit, below the message."""
    std = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(std, "tqdm", None), "_instances", ())):
        bar.close()


def _script_hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    """sys.excepthook for a script run: our errors and Ctrl-C as one line, anything else as Python shows it."""
    if issubclass(kind, OURS):
        _close_progress_bars()
        print(f"error: {error}", file=sys.stderr)  # Python then exits with status 1
    elif issubclass(kind, KeyboardInterrupt):
        # Python then ends the process by SIGINT, as for any Ctrl-C: a shell sees 130, and a
        # script that called this one stops too.
        _close_progress_bars()
        print(INTERRUPTED, file=sys.stderr)
    else:
        sys.__excepthook__(kind, error, tb)  # an unexpected error: its traceback is the clue


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM in a script: one line, then Terminated from where the program is (a second SIGTERM is ignored)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # kill -9 still ends it; cleaning up must not be cut short
    _close_progress_bars()
    print(TERMINATED, file=sys.stderr, flush=True)
    raise Terminated()


def _shell_handler(
    shell: object, kind: type, error: BaseException, tb: TracebackType | None, tb_offset: int | None = None
) -> list[str]:
    """IPython's custom-exception handler: the cell still fails (Run all stops), its error shown as one line."""
    stb = [f"{kind.__name__}: {error}"]
    shell._showtraceback(kind, error, stb)  # what IPython's showtraceback calls; ipykernel sends it as the cell's error
    return stb


def short_errors() -> None:
    """Show the project's own errors as one line (and Ctrl-C as a note to run again), in a script or a notebook.

    A script gets a sys.excepthook. Under IPython (Jupyter, Colab), whose cells never reach
    sys.excepthook, the same errors are registered with the shell: the cell still fails and Run
    all still stops, but the output is the message, not 20 lines of frames in helpers/. Any
    other error keeps its full traceback in both, and so does Ctrl-C in a notebook, where
    interrupting a cell is ordinary use. A script also meets SIGTERM (kill, torchrun stopping its
    workers) as it meets Ctrl-C: the write in progress is finished or abandoned cleanly, the
    checkpoint folder let go, one line said, and the exit status is 143.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        sys.excepthook = _script_hook
        signal.signal(signal.SIGTERM, _on_sigterm)
    else:
        shell.set_custom_exc(OURS, _shell_handler)
