"""Google Colab's extras: checkpoints on Drive (or a loud fallback), downloads, and the runtime's warnings.

The notebook calls the Drive and download functions only in Colab (its setup cell finds out,
before helpers/ can be imported).
"""

from __future__ import annotations

import shutil
from pathlib import Path

DRIVE_MOUNT_POINT = "/content/drive"
RULE = "=" * 100


def mount_point_of(path: str | Path) -> Path | None:
    """Where the Drive holding path is mounted (the folder above `MyDrive`), or None if path is not on Drive."""
    return next((p.parent for p in Path(path).parents if p.name == "MyDrive"), None)


def checkpoints_on_drive(drive_dir: str | Path, run: str, fallback: Path) -> tuple[Path, bool]:
    """(drive_dir/checkpoints/run, True) with Drive mounted; (fallback, False) and a loud warning if Drive says no.

    drive.mount waits for the user (about two minutes) and raises if they decline, leave a
    permission unticked or are away; training then goes on with local checkpoints.
    """
    from google.colab import drive

    mount_point = mount_point_of(drive_dir) or Path(DRIVE_MOUNT_POINT)
    try:
        drive.mount(str(mount_point))
        checkpoint_dir = Path(drive_dir) / "checkpoints" / run
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return checkpoint_dir, True
    except Exception as e:  # a timeout, a refusal, a missing permission: all end the same way
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        print(
            f"{RULE}\nGOOGLE DRIVE DID NOT MOUNT ({reason}).\n"
            f"Training goes on with checkpoints in {fallback}, on this runtime only: a runtime reset deletes them.\n"
            f"To use Drive instead: run the Settings cell again, allow access to Google Drive (tick every "
            f"permission), then run the cells below it.\nTo train without Drive and without this warning, untick "
            f"USE_DRIVE in the Settings form.\n{RULE}"
        )
        return fallback, False


def flush_drive() -> None:
    """Push everything written to Drive up before the runtime can go away (this unmounts Drive)."""
    from google.colab import drive

    drive.flush_and_unmount()


def download(path: str | Path) -> Path:
    """Send a file to the browser as a download; return the path sent.

    The browser fetches the file after the cell has finished, so a file on Drive is sent from a
    copy in the working directory, which unmounting Drive cannot cut off. Called after Drive was
    unmounted (the Finish cell does that), it mounts Drive again first.
    """
    from google.colab import drive, files

    path = Path(path)
    mount_point = mount_point_of(path)
    if mount_point is not None:
        if not (mount_point / "MyDrive").is_dir():
            drive.mount(str(mount_point))
        path = Path(shutil.copyfile(path, Path.cwd() / path.name))
    files.download(str(path))
    return path


def report_files(paths: list[Path], on_drive: bool, send: bool) -> None:
    """Say where the final files are and how big, and download the first through the browser if asked."""
    for path in paths:
        print(f"{path}: {path.stat().st_size / 1e6:,.1f} MB")
    if send:
        sent = download(paths[0])
        print(f"downloading {sent.name}: your browser saves it once this cell has finished")
    elif on_drive:
        print(
            f"these files are on your Google Drive, in {paths[0].parent}; to download one through the browser "
            "as well, tick DOWNLOAD in the Settings form or run: colab.download(final_path)"
        )
    else:
        print(
            f"{RULE}\nTHESE FILES ARE ONLY ON THIS RUNTIME: a runtime reset deletes them. Download them now "
            f"(file pane on the left, or run: colab.download(final_path)).\n{RULE}"
        )
    if len(paths) > 1:
        print("for the float16 copy: colab.download(half_path)")


def no_gpu_banner(preset: str, params: int) -> str:
    """The warning for a runtime without a GPU: what is trained instead, and how to get a GPU."""
    return (
        f"{RULE}\nNO GPU ON THIS RUNTIME: training the '{preset}' preset's small model ({params / 1e6:.1f}M "
        f"parameters) on the CPU instead of GPT-2 124M.\nTo train GPT-2 124M in Colab: Runtime > Change "
        f"runtime type > T4 GPU, then Runtime > Run all.\n{RULE}"
    )
