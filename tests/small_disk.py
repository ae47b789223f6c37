"""A small disk for tests: the files under a folder may hold at most CAPACITY bytes in all. A write that
would go beyond fails with ENOSPC, as on a full disk or a full Drive, and shutil.disk_usage reports the
room left. install() works in this process (with pytest's monkeypatch, undone when the test ends) and,
through sitecustomize_env, in a child process (SITECUSTOMIZE, with SMALL_DISK_TESTS, SMALL_DISK_DIR
and SMALL_DISK_BYTES set)."""

from __future__ import annotations

import errno
import os
import shutil

SITECUSTOMIZE = """
import os, sys
sys.path.insert(0, os.environ["SMALL_DISK_TESTS"])
import small_disk
small_disk.install(os.environ["SMALL_DISK_DIR"], int(os.environ["SMALL_DISK_BYTES"]))  # for the process's life
"""


def used(root: str) -> int:
    """Bytes held by the files under root."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(folder, name))
            except OSError:
                pass  # gone meanwhile
    return total


def install(folder: str | os.PathLike, capacity: int, monkeypatch: object = None) -> None:
    """Give folder capacity bytes from now on, in this process (until monkeypatch is undone, if given)."""
    root = os.path.abspath(folder)
    real_fdopen, real_disk_usage = os.fdopen, shutil.disk_usage

    def inside(path: str) -> bool:
        return path == root or path.startswith(root + os.sep)

    class Bounded:
        """A file opened for writing under the folder: each write checked against the room left."""

        def __init__(self, f):
            self.f = f

        def write(self, data) -> int:
            self.f.flush()  # what was written before is on disk, where used() counts it
            if used(root) + len(data) > capacity:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        writing = any(c in mode for c in "wax+")
        return Bounded(f) if writing and inside(os.readlink(f"/proc/self/fd/{fd}")) else f

    def disk_usage(path):
        if not inside(os.path.abspath(path)):
            return real_disk_usage(path)
        taken = used(root)
        return shutil._ntuple_diskusage(capacity, taken, max(0, capacity - taken))

    set_attribute = monkeypatch.setattr if monkeypatch is not None else setattr
    set_attribute(os, "fdopen", fdopen)
    set_attribute(shutil, "disk_usage", disk_usage)
