"""The tree passes ruff (pyproject.toml): lint and format, so that CI enforces both."""

import subprocess

import pytest
from ruff.__main__ import find_ruff_bin

from conftest import REPO


@pytest.mark.parametrize("args", [("check", "."), ("format", "--check", "--diff", ".")], ids=["check", "format"])
def test_ruff_passes_on_the_tree(args):
    proc = subprocess.run([find_ruff_bin(), *args], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, (
        f"ruff {' '.join(args)} failed (fix with: ruff check --fix . && ruff format .)\n"
        + (proc.stdout + proc.stderr)[-6000:]
    )
