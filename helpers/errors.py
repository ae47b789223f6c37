"""The project's errors: each names the file or folder it is about, and says the problem in one line."""

from __future__ import annotations

from pathlib import Path


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


def describe(error: BaseException, limit: int = 200) -> str:
    """'TypeName: first line of the message' (at most limit characters), for errors raised by other libraries."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:limit]}" if lines else type(error).__name__
