"""Google Colab's extras: keep checkpoints on Drive, and download files to the user's computer.

Every function here is a no-op outside Colab, so the notebook runs the same as a script.
"""

from __future__ import annotations

from pathlib import Path

DRIVE_MOUNT_POINT = "/content/drive"


def in_colab() -> bool:
    """True when running in Google Colab."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def mount_drive(drive_dir: str | Path) -> Path:
    """Mount Google Drive (asks the user once) and return drive_dir/checkpoints, created."""
    from google.colab import drive

    drive.mount(DRIVE_MOUNT_POINT)
    checkpoint_dir = Path(drive_dir) / "checkpoints"
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return checkpoint_dir


def flush_drive() -> None:
    """Push everything written to Drive up before the runtime can go away."""
    from google.colab import drive

    drive.flush_and_unmount()


def download(path: str | Path) -> None:
    """Send a file to the browser as a download."""
    from google.colab import files

    files.download(str(path))
