"""One run per checkpoint folder: a lock, so that a second run refuses instead of overwriting the first.

Two layers, because a folder on Google Drive can be mounted by two Colab runtimes at once:

- an fcntl lock (flock) on the folder itself (`run.lock` is replaced at each heartbeat, so it
  cannot carry one), held while the run lives: the kernel drops it when the process dies, however
  it dies, so on one machine a crashed run never blocks the next. It cannot see other machines.
- the content of `run.lock`: the holder's host, process, start time and a heartbeat that a thread
  rewrites every HEARTBEAT_S. A lock of another machine holds while its heartbeat goes on: a run
  that finds one younger than STALE_AFTER_S watches it until it is that old (a reset runtime has
  stopped beating: Run all on the new runtime waits, then goes on); one of this machine holds while
  its process lives. A stale lock is taken over, loudly. The heartbeat also re-reads the file: a
  run whose lock was taken over (Drive showed another runtime an old heartbeat) learns it and
  stops at its next save.

Drive shows one runtime's writes to another after a delay, so two runtimes starting within
seconds of each other may both see a free folder; the re-read after writing catches most of it.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from pathlib import Path

from helpers.errors import PathError
from helpers.fileio import HOST, atomic_write_bytes, discard, pid_alive
from helpers.training.distributed import print0

try:
    import fcntl
except ImportError:  # Windows: the lock file alone
    fcntl = None

LOCK_NAME = "run.lock"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 180.0  # six missed heartbeats: longer than Drive takes to show one runtime's write to another
POLL_S = 5.0  # how often a run waiting for another machine's lock looks at it again
_held: dict[
    Path, "FolderLock"
] = {}  # the folders this process holds: a notebook run again in its kernel keeps its lock


class LockError(PathError):
    """The checkpoint folder is held by another living run, or this run's lock was taken over."""


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _read(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # none, or torn: nobody's
    return (
        record if isinstance(record, dict) and {"host", "pid", "started", "heartbeat", "id"} <= record.keys() else None
    )


def holder(record: dict) -> str:
    """Who holds a lock, in words."""
    return f"process {record['pid']} on host {record['host']}, started {_when(record['started'])}"


class FolderLock:
    """This process's hold on a checkpoint folder (see the module's docstring); make it with hold_folder."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.path = folder, folder / LOCK_NAME
        now = time.time()
        self.record = {"host": HOST, "pid": os.getpid(), "started": now, "heartbeat": now, "id": os.urandom(8).hex()}
        self.lost: str | None = None
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _flock(self) -> bool | None:
        """Take the fcntl lock: True, False if another process has it, None where the file system has none."""
        if fcntl is None:
            return None
        self._fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            return False
        except OSError:  # ENOLCK, EOPNOTSUPP: a file system without locks
            return None

    def acquire(self) -> None:
        """Hold the folder, taking over a stale lock loudly; LockError if a living run holds it."""
        self._check_lock_file()
        flocked = self._flock()
        other = _read(self.path)
        if flocked is False:
            who = holder(other) if other else "another process on this machine"
            raise LockError(
                self.folder,
                f"in use by another run ({who}); wait for it to finish or stop it, or choose another checkpoint_dir",
            )
        if other is not None and other["id"] != self.record["id"]:
            age = time.time() - other["heartbeat"]
            if other["host"] == HOST:
                # flock taken: its holder died (the kernel let go); without flock, ask whether it lives
                stale = flocked or other["pid"] == os.getpid() or not pid_alive(other["pid"])
                why = "its process is gone"
            else:
                # a heartbeat from the future (another runtime's clock ahead, an edited file) is taken as now
                heard = min(other["heartbeat"], time.time())
                stale = time.time() - heard > STALE_AFTER_S or self._wait_for_silence(other, heard)
                ahead = f" (its heartbeat was {-age:.0f} s in the future, taken as now)" if age < 0 else ""
                why = f"no heartbeat for {(time.time() - heard) / 60:.0f} min{ahead}"
            if not stale:
                self._close()
                raise LockError(
                    self.folder,
                    f"in use by another run ({holder(other)}, whose heartbeat goes on); stop "
                    f"that run (in its runtime: Runtime > Disconnect and delete runtime), or choose another "
                    f"checkpoint_dir",
                )
            print0(f"TAKING OVER the lock of {self.folder} from {holder(other)}: {why}")
        self._write()
        if (_read(self.path) or {}).get("id") != self.record["id"]:  # another runtime wrote at the same moment
            self._close()
            raise LockError(self.folder, "another run took this folder at the same moment; run again to find out which")
        self._thread = threading.Thread(target=self._beat, name="folder-lock-heartbeat", daemon=True)
        self._thread.start()

    def _check_lock_file(self) -> None:
        """LockError, in one line, if the lock file's name holds something this run cannot read or replace."""
        if self.path.exists() and not self.path.is_file():
            raise LockError(
                self.path, "is a folder, not a lock file; move it out of the checkpoint folder, then run again"
            )
        try:
            self.path.read_bytes()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise LockError(
                self.path,
                f"cannot be read ({e.strerror or e}); if no other run uses this folder, delete it, then run again",
            ) from None

    def _wait_for_silence(self, other: dict, heard: float) -> bool:
        """Watch another machine's lock until STALE_AFTER_S after heard: True if it stayed still, False if it beat.

        After a runtime reset the old runtime's lock is minutes old at most, and Run all on the new
        one should not fail for it; a runtime that lives rewrites its heartbeat within HEARTBEAT_S.
        """
        deadline = heard + STALE_AFTER_S
        age = time.time() - other["heartbeat"]
        last = (
            f"{age:.0f} s ago"
            if age >= 0
            else f"{-age:.0f} s in the future (its clock is ahead, or the file was edited)"
        )
        print0(
            f"{self.folder} is held by {holder(other)}, last heartbeat {last}: waiting until {_when(deadline)} "
            "to see whether that run still lives"
        )
        while time.time() < deadline:
            time.sleep(min(POLL_S, max(0.0, deadline - time.time())))
            if _read(self.path) != other:
                return False
        return True

    def _write(self) -> None:
        self.record["heartbeat"] = time.time()
        atomic_write_bytes(self.path, json.dumps(self.record).encode())

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S) and self.beat():
            pass

    def beat(self) -> bool:
        """Rewrite the heartbeat, unless another run has taken the lock over: False once it has."""
        current = _read(self.path)
        if current is not None and current["id"] != self.record["id"]:
            self.lost = f"this run's lock was taken over by {holder(current)}; this run stops writing here"
            return False
        try:
            self._write()
        except OSError:
            pass  # a full or unreachable Drive for a moment: the next beat tries again
        return True

    def check(self) -> None:
        """Raise LockError if another run has taken the folder over."""
        if self.lost:
            raise LockError(self.folder, self.lost)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None

    def release(self) -> None:
        """Stop the heartbeat and give the folder up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.lost and (_read(self.path) or {}).get("id") == self.record["id"]:
            discard(self.path)
        self._close()
        _held.pop(self.folder, None)


def hold_folder(folder: str | Path) -> FolderLock:
    """Hold a checkpoint folder for this run (the one already held, if this process holds it)."""
    folder = Path(folder).absolute()
    if folder in _held and not _held[folder].lost:
        return _held[folder]
    lock = FolderLock(folder)
    lock.acquire()
    _held[folder] = lock
    return lock


def check_held(folder: str | Path) -> None:
    """Raise LockError if this process held folder and another run has since taken it over."""
    lock = _held.get(Path(folder).absolute())
    if lock is not None:
        lock.check()


@atexit.register
def _release_all() -> None:
    for lock in list(_held.values()):
        lock.release()
