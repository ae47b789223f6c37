"""Google Colab's extras: keep checkpoints on Drive, and download files to the user's computer.

The notebook calls these only in Colab (its setup cell finds out, before helpers/ can be imported).
"""

from __future__ import annotations

import shutil
from pathlib import Path

DRIVE_MOUNT_POINT = "/content/drive"


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


def download(path: str | Path, local_copy: bool = False) -> Path:
    """Send a file to the browser as a download; return the path sent.

    The browser fetches the file after the cell has finished. With local_copy (for files on
    Drive) it fetches a copy in the working directory, which unmounting Drive cannot cut off.
    """
    from google.colab import files

    path = Path(path)
    if local_copy:
        path = Path(shutil.copyfile(path, Path.cwd() / path.name))
    files.download(str(path))
    return path
