"""Crash-safe file writes: a temporary file beside the target, fsync, rename, fsync the directory.

A reader, or a run resumed after a crash or `kill -9`, sees either the old file or the complete
new one, never a partial write. Temporary files are named `.NAME.tmp-*` so that they never match
a checkpoint's name and can be swept up after a crash. Folders (an export, a Space) are filled
beside their place and renamed into it whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import torch

from helpers.errors import OutputError

TMP_MARK = ".tmp-"


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so that a rename in it survives a crash (where the file system allows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some file systems (e.g. on Windows) cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # e.g. FUSE mounts such as Google Drive that do not support fsync on directories
    finally:
        os.close(fd)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _read_umask()  # read once: os.umask can only be read by setting it


def _os_error_in(error: BaseException) -> OSError | None:
    """The first OSError in an exception's chain of causes, if any."""
    while error is not None:
        if isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a file atomically: write(f) fills a temporary file that then replaces path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~UMASK)  # mkstemp makes files private (0600)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as e:
        # A failed write (a full disk, an interrupt) leaves no half-written file behind.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        os_error = _os_error_in(e)
        if os_error is not None and (os_error is not e or os_error.filename is None):
            # torch.save reports a failed write as a RuntimeError about stream positions; the
            # OSError underneath ("No space left on device"), with the file named, is what the
            # user needs to see.
            raise OSError(os_error.errno, os_error.strerror or str(os_error), str(path)) from None
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, payload: bytes) -> Path:
    """Write bytes to path atomically."""
    return atomic_write(path, lambda f: f.write(payload))


def atomic_torch_save(obj: object, path: str | Path) -> Path:
    """torch.save obj to path atomically."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporary files left by writes that a crash interrupted; return what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and TMP_MARK in p.name and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def check_out_dir(out_dir: Path, force: bool = False, source: Path | None = None) -> None:
    """Refuse an out_dir that is a file, holds source, or is not empty unless forced (an OutputError)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(out_dir, "exists and is not a folder")
    if source is not None and out_dir.resolve() in source.resolve().parents:
        # --force replaces out_dir whole: it would delete the checkpoint it is exporting.
        raise OutputError(out_dir, f"holds the checkpoint {source.name}; choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise OutputError(out_dir, "is not empty; pass --force to replace it")


def write_folder(out_dir: str | Path, fill: Callable[[Path], None], force: bool = False) -> Path:
    """Fill a temporary folder beside out_dir, then rename it into place: never half a folder."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Not named with fileio's TMP_MARK: remove_stale_temporaries() deletes files only.
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes folders private (0700)
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out_dir.exists():
            os.replace(old, out_dir)  # put the previous folder back
        raise
    shutil.rmtree(old, ignore_errors=True)
    fsync_dir(out_dir.parent)
    return out_dir
