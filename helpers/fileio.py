"""Crash-safe file writes: a temporary file beside the target, fsync, rename, fsync the directory.

A reader, or a run resumed after a crash or `kill -9`, sees either the old file or the complete
new one, never a partial write. Temporary files are named `.NAME.tmp-HOST-PID-*`: they never match
a checkpoint's name, and they say who made them, so that the sweep after a crash removes only
those of no living process. Folders (an export, a Space) are filled beside their place and
renamed into it whole.

Google Drive (a folder under `MyDrive` or `Shareddrives`) keeps every file deleted through its
mount in its trash for 30 days, counted against the quota, and a file replaced by a rename is
deleted that way too. So on Drive a file is truncated to zero bytes before it is deleted (the
known workaround, voicepaw/so-vits-svc-fork#581), and an existing file is replaced in steps that
never trash a full copy yet never leave its name without a complete file for longer than a start
can repair:

1. write `.NAME.tmp-...`, fsync it (a crash: the old NAME is intact, the sweep removes the temporary);
2. rename it to `.NAME.new-HOST-PID` (complete: from here on a start finishes the replacement);
3. truncate NAME to zero bytes (a crash: NAME is empty, `.NAME.new-*` complete; the next start,
   `finish_replacements`, renames it over NAME before anything reads NAME);
4. rename `.NAME.new-HOST-PID` over NAME (the empty old NAME is what goes to the trash).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import torch

from helpers.errors import OutputError, Terminated

TMP_MARK = ".tmp-"
NEW_MARK = ".new-"  # a complete file waiting to replace its target (Drive only, see above)
DRIVE_ROOTS = ("MyDrive", "Shareddrives")
HOST = re.sub(r"[^\w.]", "_", socket.gethostname()) or "host"  # no '-': the owner tag splits on it
# A temporary's owner: .NAME.tmp-HOST-PID-RANDOM (mkstemp's random part has no '-') or .NAME.new-HOST-PID.
OWNER = re.compile(
    rf"^\.(?P<target>.+?)(?:{re.escape(TMP_MARK)}(?P<thost>[\w.]+)-(?P<tpid>\d+)-\w+"
    rf"|{re.escape(NEW_MARK)}(?P<nhost>[\w.]+)-(?P<npid>\d+))$"
)
_writing: set[str] = set()  # temporaries this process is writing now: never swept


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk; a full quota


def no_space(error: BaseException) -> bool:
    """Whether error is a write that failed for lack of space: a full disk, or a full quota."""
    return isinstance(error, OSError) and error.errno in NO_SPACE


def free_bytes(directory: str | Path) -> int:
    """The bytes free where directory is, or would be made.

    On Colab's Drive mount the file system reports the Drive's own quota: `df -h
    /content/drive/MyDrive` shows the account's storage as the size and what Drive holds as used
    (googlecolab/colabtools#6051), so this is what is left of a free account's 15 GB, shared with
    mail and photos. Writes to Drive pass through the runtime's own disk first (colabtools#659),
    which is larger.
    """
    path = Path(directory).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


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


def on_drive(path: str | Path) -> bool:
    """Whether path is on a mounted Google Drive (below a MyDrive or Shareddrives folder)."""
    return any(p.name in DRIVE_ROOTS for p in Path(path).absolute().parents)


def pid_alive(pid: int) -> bool:
    """Whether a process of this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def discard(path: str | Path) -> None:
    """Delete a file; on Drive truncate it first, so that its trash holds an empty file, not a full one."""
    path = Path(path)
    if on_drive(path):
        try:
            os.truncate(path, 0)
        except FileNotFoundError:
            return
    path.unlink(missing_ok=True)


def _in_chain(error: BaseException | None, kind: type | tuple[type, ...]) -> BaseException | None:
    """The first exception of a kind in an exception's chain of causes, if any."""
    while error is not None:
        if isinstance(error, kind):
            return error
        error = error.__cause__ or error.__context__
    return None


def _is_temporary(name: str | None) -> bool:
    return name is not None and (TMP_MARK in name or NEW_MARK in name or ".partial-" in name)


def _as_target_error(error: BaseException, target: Path) -> BaseException:
    """What a failed write raises: an interrupt (Ctrl-C, SIGTERM) as itself, a disk error naming the target file."""
    interrupt = _in_chain(error, (KeyboardInterrupt, Terminated))
    if interrupt is not None:
        # torch.save turns an exception raised inside its writes (Ctrl-C) into a RuntimeError
        # ("unexpected pos"): an interrupt must stay an interrupt.
        return interrupt if interrupt is error else type(interrupt)()
    os_error = _in_chain(error, OSError)
    if os_error is not None and (os_error.filename is None or _is_temporary(str(os_error.filename))):
        # torch.save reports a failed write as a RuntimeError about stream positions; the OSError
        # underneath ("No space left on device"), naming the file the user asked for, is what they need.
        return OSError(os_error.errno, os_error.strerror or str(os_error), str(target))
    return error


def _reraise(error: BaseException, target: Path) -> None:
    """Raise error, or what stands for it (_as_target_error) without the chain it replaces."""
    replacement = _as_target_error(error, target)
    if replacement is error:
        raise error
    raise replacement from None


def _finish_replacement(staged: Path, target: Path) -> None:
    """Steps 3 and 4 of a replacement on Drive: empty the old target, rename the complete new file over it."""
    if target.exists():
        os.truncate(target, 0)
    os.replace(staged, target)
    fsync_dir(target.parent)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a file atomically: write(f) fills a temporary file that then replaces path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}{NEW_MARK}{HOST}-{os.getpid()}") if on_drive(path) and path.exists() else None
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}{HOST}-{os.getpid()}-")
        _writing.add(tmp_name)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~UMASK)  # mkstemp makes files private (0600)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if staged is None:
            os.replace(tmp_name, path)
        else:
            os.replace(tmp_name, staged)
            fsync_dir(path.parent)
            _finish_replacement(staged, path)
    except BaseException as e:
        # A failed write (a full disk, an interrupt) leaves no half-written file behind, and a
        # complete one that was about to replace the target still replaces it where it can.
        if tmp_name is not None and os.path.exists(tmp_name):
            discard(tmp_name)
        if staged is not None and staged.exists():
            try:
                _finish_replacement(staged, path)
            except OSError:
                pass  # the next start finishes it (finish_replacements)
        _reraise(e, path)
    finally:
        _writing.discard(tmp_name)
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, payload: bytes) -> Path:
    """Write bytes to path atomically."""
    return atomic_write(path, lambda f: f.write(payload))


def atomic_torch_save(obj: object, path: str | Path) -> Path:
    """torch.save obj to path atomically."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def _made_by_a_living_process(match: re.Match) -> bool:
    """Whether the process named in a temporary's name still runs (this machine only: on another
    machine, a run that lives holds the folder's lock, which the caller of the sweep holds now)."""
    host, pid = match["thost"] or match["nhost"], int(match["tpid"] or match["npid"])
    return host == HOST and pid != os.getpid() and pid_alive(pid)


def _temporaries(directory: Path) -> list[tuple[Path, re.Match | None]]:
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.name.startswith(".") and (TMP_MARK in p.name or NEW_MARK in p.name)]
    return [(p, OWNER.match(p.name)) for p in sorted(found) if p.is_file()]


def finish_replacements(directory: str | Path) -> list[Path]:
    """Complete the Drive replacements a crash interrupted after the new file was whole; return their targets."""
    done = []
    for path, match in _temporaries(Path(directory)):
        if match and match["nhost"] and not _made_by_a_living_process(match):
            target = path.with_name(match["target"])
            _finish_replacement(path, target)
            done.append(target)
    return done


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files of interrupted writes, none of a living process; return what was removed.

    Call it holding the folder's lock (helpers.checkpoints.lock), after finish_replacements.
    """
    stale = [
        p
        for p, match in _temporaries(Path(directory))
        if NEW_MARK not in p.name  # complete files: finish_replacements puts them in place
        and str(p) not in _writing
        and not (match and _made_by_a_living_process(match))
    ]
    for p in stale:
        discard(p)
    return stale


def check_writable(directory: str | Path) -> str | None:
    """Create directory if need be, then write and remove a test file: None if that works, else why not.

    A folder that cannot be created at all is an OutputError (one line naming it).
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(directory, f"cannot be created ({e.strerror or e}); choose another checkpoint_dir") from None
    if not directory.is_dir():
        raise OutputError(directory, "exists and is not a folder; choose another checkpoint_dir")
    probe = directory / f".write-test{TMP_MARK}{HOST}-{os.getpid()}-probe"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        return e.strerror or str(e)
    return None


def check_out_dir(out_dir: Path, force: bool = False, source: Path | None = None) -> None:
    """Refuse an out_dir that is a file, holds source, or is not empty unless forced (an OutputError)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(out_dir, "exists and is not a folder")
    if source is not None and out_dir.resolve() in source.resolve().parents:
        # --force replaces out_dir whole: it would delete the checkpoint it is exporting.
        raise OutputError(out_dir, f"holds the checkpoint {source.name}; choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise OutputError(out_dir, "is not empty; pass --force to replace it")


def discard_tree(folder: Path) -> None:
    """Delete a folder and all in it; on Drive its files are truncated first (see discard)."""
    if on_drive(folder):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                os.truncate(path, 0)
    shutil.rmtree(folder, ignore_errors=True)


def write_folder(out_dir: str | Path, fill: Callable[[Path], None], force: bool = False) -> Path:
    """Fill a temporary folder beside out_dir, then rename it into place: never half a folder."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    tmp = old = None
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        # Not named with fileio's TMP_MARK: remove_stale_temporaries() deletes files only.
        tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        fill(tmp)
        os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes folders private (0700)
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException as e:
        if tmp is not None:
            discard_tree(tmp)
        if old is not None and old.exists() and not out_dir.exists():
            os.replace(old, out_dir)  # put the previous folder back
        _reraise(e, out_dir)
    discard_tree(old)
    fsync_dir(out_dir.parent)
    return out_dir
