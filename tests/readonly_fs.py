"""A read-only folder for tests, also when they run as root (whom chmod does not stop): the calls
that would write under the folder fail with EROFS, as on a read-only mount. install() works in this
process (undo with the function it returns) and, through sitecustomize_env, in a child process."""

from __future__ import annotations

import builtins
import errno
import io
import os
from typing import Callable

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Run first in a child process whose READ_ONLY_DIR is to be read-only (see conftest.sitecustomize_env).
SITECUSTOMIZE = """
import os, sys
sys.path.insert(0, os.environ["READ_ONLY_TESTS"])
import readonly_fs
readonly_fs.install(os.environ["READ_ONLY_DIR"])
"""


def install(folder: str | os.PathLike) -> Callable[[], None]:
    """Make folder read-only for this process; return the function that undoes it."""
    root = os.path.abspath(folder)

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return False  # a file descriptor: opened before, or read-only
        full = os.path.abspath(os.fsdecode(os.fspath(path)))
        return full == root or full.startswith(root + os.sep)

    def refuse(path: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(os.fspath(path)))

    saved = []

    def wrap(module: object, name: str, writes: Callable[..., bool]) -> None:
        real = getattr(module, name)
        saved.append((module, name, real))

        def guarded(path, *args, **kwargs):
            if writes(path, *args, **kwargs):
                refuse(path)
            return real(path, *args, **kwargs)

        setattr(module, name, guarded)

    wrap(os, "open", lambda path, flags, *a, **k: inside(path) and bool(flags & WRITE_FLAGS))
    for name in ("mkdir", "unlink", "remove", "rmdir", "truncate"):
        wrap(os, name, lambda path, *a, **k: inside(path))
    for name in ("rename", "replace"):
        wrap(os, name, lambda src, dst, *a, **k: inside(src) or inside(dst))
    for module in (builtins, io):
        wrap(module, "open", lambda path, mode="r", *a, **k: inside(path) and any(c in mode for c in "wax+"))

    def undo() -> None:
        for module, name, real in reversed(saved):
            setattr(module, name, real)

    return undo
