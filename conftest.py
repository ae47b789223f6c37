"""Test-wide settings, applied before anything runs (nbval's notebook kernel included).

nbval cannot pass arguments to the notebook, so it gets them the notebook's way: GPT2_* variables.
Every test run trains the tiny `ci` preset, with data and checkpoints in a temporary folder, so a
user's own data/ and checkpoints/ are never touched. ../shared is used when it is there.
nbval's notebook items are marked `slow`, so that the fast loop (`pytest -m "not slow"`) skips them.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parent.parent / "shared"
_session_dir = None


def pytest_configure(config):
    global _session_dir
    _session_dir = Path(tempfile.mkdtemp(prefix="gpt2-tests-"))
    for var in [v for v in os.environ if v.startswith("GPT2_") and v != "GPT2_DATA_URL"]:
        del os.environ[var]  # a developer's own settings must not leak into the tests
    os.environ["GPT2_PRESET"] = "ci"
    os.environ["GPT2_DATA_DIR"] = str(_session_dir / "data")
    os.environ["GPT2_CHECKPOINT_DIR"] = str(_session_dir / "notebook-checkpoints")
    if SHARED.is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken_cache"))
        os.environ.setdefault("GPT2_DATA_URL", (SHARED / "data" / "tinyshakespeare" / "input.txt").as_uri())
    os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_unconfigure(config):
    if _session_dir is not None:
        shutil.rmtree(_session_dir, ignore_errors=True)


def pytest_collection_modifyitems(items: list) -> None:
    """nbval's items run the whole notebook in a fresh kernel: `slow`, like the tests that run its .py."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
