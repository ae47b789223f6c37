"""The tree passes ruff (pyproject.toml): lint and format, so that CI enforces both."""

import re
import subprocess
from pathlib import Path

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


def test_ruff_sees_every_python_file_of_the_project():
    """An exclude that matches too much checks nothing (once "checkpoints" took helpers/checkpoints/ too)."""
    proc = subprocess.run([find_ruff_bin(), "check", "--show-files"], cwd=REPO, capture_output=True, text=True)
    seen = {Path(line.strip()).resolve() for line in proc.stdout.splitlines() if line.strip().endswith(".py")}
    ours = {
        p.resolve() for folder in ("helpers", "tests", "scripts", "notebooks") for p in (REPO / folder).rglob("*.py")
    }
    assert not ours - seen, sorted(str(p.relative_to(REPO)) for p in ours - seen)


def test_docs_layout_names_every_module_and_folder_of_helpers():
    """A newcomer finds each concern from docs/layout.md: every helpers/ file and folder is in it."""
    layout = (REPO / "docs" / "layout.md").read_text()
    layout = layout[: layout.index("```", layout.index("```") + 3)]
    helpers = REPO / "helpers"
    # helpers/NAME.py that only makes `python -m helpers.NAME` run helpers/commands/NAME.py's main
    shims = {
        p.name
        for p in helpers.glob("*.py")
        if re.search(r"^from helpers\.commands\.\w+ import main$", p.read_text(), re.M)
    }
    missing = [
        str(p.relative_to(helpers))
        for p in sorted(helpers.rglob("*"))
        if "__pycache__" not in p.parts
        and "space_template" not in p.parent.parts
        and (p.is_dir() or (p.suffix == ".py" and p.name != "__init__.py" and p.name not in shims))
        and not re.search(rf"(^|[\s,/(]){re.escape(p.name)}([/,)]|\s|$)", layout, re.M)
    ]
    assert not missing, f"docs/layout.md does not name {missing}"
