"""Stand-in for google.colab.drive: mounting links mountpoint to $FAKE_DRIVE, the user's Drive."""

import json
import os

from . import _log
from ._message import MessageError


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    mode = os.environ.get("FAKE_DRIVE_MODE", "ok")
    _log("mount", str(mountpoint), mode)
    if mode == "refuse":
        raise MessageError("Error: credential propagation was unsuccessful")
    if mode == "timeout":
        raise ValueError("mount failed: timed out waiting for the user")
    if os.path.islink(mountpoint) and not force_remount:
        print(
            f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, "
            f'call drive.mount("{mountpoint}", force_remount=True).'
        )
        return
    if os.path.lexists(mountpoint):
        if not os.path.islink(mountpoint) and os.listdir(mountpoint):
            raise ValueError("Mountpoint must not already contain files")
        os.unlink(mountpoint) if os.path.islink(mountpoint) else os.rmdir(mountpoint)
    os.makedirs(os.path.join(os.environ["FAKE_DRIVE"], "MyDrive"), exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(mountpoint)), exist_ok=True)
    os.symlink(os.environ["FAKE_DRIVE"], mountpoint)
    print(f"Mounted at {mountpoint}")


def flush_and_unmount(timeout_ms=24 * 60 * 60 * 1000):
    mounted = [p for p in _mount_points() if os.path.islink(p)]
    _log("flush_and_unmount", mounted)
    if not mounted:
        print("Drive not mounted, so nothing to flush and unmount.")
    for path in mounted:
        os.unlink(path)
    print("All changes made in this colab session should now be visible in Drive.")


def _mount_points():
    """Every mount point asked for so far (the log remembers what a kernel restart would forget)."""
    if not os.path.exists(os.environ["FAKE_COLAB_LOG"]):
        return []
    with open(os.environ["FAKE_COLAB_LOG"]) as f:
        return sorted({e[1] for e in map(json.loads, f) if e[0] == "mount"})
