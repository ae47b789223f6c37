"""What the command-line tools share: bad input as one line on stderr and exit status 1."""

from __future__ import annotations

import sys
from pathlib import Path

from helpers.checkpoint import CheckpointError


def fail(error: Exception, path: str | Path | None = None) -> int:
    """Print error as one line naming the file (path, when the error names none) and return exit status 1."""
    if isinstance(error, OSError) and not isinstance(error, CheckpointError):
        message = f"{error.filename or path}: {error.strerror or error}"
    elif isinstance(error, CheckpointError) or path is None:
        message = str(error)
    else:
        message = f"{path}: {error}"
    print(f"error: {message}", file=sys.stderr)
    return 1
