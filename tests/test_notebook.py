"""The notebook as a file (paired, stripped, no magics) and the ci-preset script run's results."""

import dataclasses
import json
import re
import symtable

import jupytext
import pytest
import torch

from conftest import NOTEBOOK, REPO, SCRIPT
from helpers.checkpoints.checkpointer import Checkpointer
from helpers.checkpoints.policy import CHECKPOINT_FILES
from helpers.checkpoints.storage import read_checkpoint
from helpers.config import TrainConfig
from helpers.model import GPT, GPTConfig


def cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_ipynb_and_py_hold_the_same_cells():
    assert cells(jupytext.read(NOTEBOOK)) == cells(jupytext.read(SCRIPT))


def test_ipynb_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_notebook_asks_colab_for_a_gpu():
    metadata = json.loads(NOTEBOOK.read_text())["metadata"]
    assert metadata["accelerator"] == "GPU"


def test_no_shell_or_magic_lines():
    for _, source in cells(jupytext.read(SCRIPT)):
        assert not re.search(r"^\s*[!%]", source, re.M), source


def test_every_code_cell_follows_a_markdown_cell():
    kinds = [kind for kind, _ in cells(jupytext.read(SCRIPT))]
    for i, kind in enumerate(kinds):
        if kind == "code":
            assert i > 0 and kinds[i - 1] == "markdown", f"code cell {i} has no markdown cell before it"


@pytest.mark.slow
def test_ci_run_writes_the_policy_files(ci_run):
    checkpoint_dir, proc = ci_run
    names = sorted(p.name for p in checkpoint_dir.iterdir())
    # ci preset: 20 steps, save_every 5, keep_last 2; at step 20 the final pair replaces a periodic file
    assert [n for n in names if n.startswith("model_step_")] == ["model_step_10.pt", "model_step_15.pt"]
    for name in ("model_best.pt", "model_final.pt", "model_final_full.pt", "loss.png"):
        assert name in names
    assert (checkpoint_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ROMEO:" in proc.stdout  # a sample was printed
    assert "model_final.pt" in proc.stdout  # and what was saved, with its size


@pytest.mark.slow
def test_final_checkpoint_loads_strict(ci_run):
    checkpoint_dir, _ = ci_run
    ckpt = torch.load(checkpoint_dir / "model_final.pt", map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model_state_dict"], strict=True)
    history = read_checkpoint(checkpoint_dir / "model_final_full.pt")["history"]
    assert ckpt["step"] == min(history["val"][1:], key=lambda sv: sv[1])[0]  # the best step


@pytest.mark.slow
def test_validation_loss_falls(ci_run):
    checkpoint_dir, _ = ci_run
    history = read_checkpoint(checkpoint_dir / "model_final_full.pt")["history"]
    val = [loss for _, loss in history["val"]]
    assert [s for s, _ in history["val"]] == [0, 5, 10, 15, 20]
    assert abs(val[0] - 10.8) < 0.3 and val[-1] < val[0] - 2.0
    assert [s for s, _ in history["train"]] == list(range(1, 21))


def test_readme_checkpoint_table_says_what_the_notebook_prints():
    """helpers.checkpoints.policy.CHECKPOINT_FILES is the one source: the README's table must agree with it."""
    rows = {
        line.split("|")[1].strip(): line
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("| `model_")
    }
    for name, (contains, use) in CHECKPOINT_FILES.items():
        row = rows.get(f"`{name}`")
        assert row is not None, f"README's checkpoint table has no row for {name}"
        assert f"| {contains} |" in row and use in row, row


# ----------------------------------------------------------------------------- the notebook as a story


def code_cells() -> list[tuple[str, str]]:
    """(heading of the markdown cell before it, source) of each code cell of the .py."""
    found, heading = [], ""
    for kind, source in cells(jupytext.read(SCRIPT)):
        if kind == "markdown":
            heading = next((line[3:].strip() for line in source.splitlines() if line.startswith("## ")), heading)
        else:
            found.append((heading, source))
    return found


def test_the_story_names_only_what_exists():
    """What a markdown cell names in backticks is there: a path of the project, a setting (as a field or as its
    GPT2_ variable), a name a cell binds, a checkpoint file of the policy, a method of the Checkpointer."""
    settings = {f.name for f in dataclasses.fields(TrainConfig)}
    bound = set().union(*(names_of(source)[0] for _, source in code_cells()))
    for kind, text in cells(jupytext.read(SCRIPT)):
        if kind != "markdown":
            continue
        for name in re.findall(r"`([^`\n]+)`", text):
            if name.startswith("helpers/"):
                assert (REPO / name).exists(), name
            elif variable := re.fullmatch(r"GPT2_([A-Z][A-Z0-9_]*)(=.*)?", name):
                assert variable[1].lower() in settings, name
            elif method := re.fullmatch(r"files\.(\w+)\(\)", name):
                assert callable(getattr(Checkpointer, method[1], None)), name
            elif re.fullmatch(r"model_\w+(\{step\}\.pt|\.pt)", name):
                assert name in CHECKPOINT_FILES, name
            elif re.fullmatch(r"[a-z]\w*_\w*", name):  # a snake_case name: a setting, or the notebook's
                assert name in settings | bound, name


def names_of(source: str) -> tuple[set[str], set[str]]:
    """(names a cell binds at top level, names it reads from the notebook's globals, in functions too)."""
    table = symtable.symtable(source, "cell", "exec")
    bound = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    read = set()

    def visit(t: symtable.SymbolTable) -> None:
        for s in t.get_symbols():
            if s.is_referenced() and (t.get_type() == "module" or s.is_global()):
                read.add(s.get_name())
        for child in t.get_children():
            visit(child)

    visit(table)
    return bound, read


def test_no_cell_uses_a_name_that_a_later_cell_defines():
    headings, sources = zip(*code_cells())
    bound, read = zip(*map(names_of, sources))
    for i, heading in enumerate(headings):
        later = set().union(*bound[i + 1 :]) - set().union(*bound[: i + 1])
        assert not read[i] & later, f"the {heading} cell uses {read[i] & later} from later"


def test_no_cell_reaches_into_another_through_globals():
    for heading, source in code_cells():
        assert "globals()" not in source, heading


def test_setup_plumbing_hides_under_a_colab_form_title():
    heading, source = code_cells()[0]
    assert heading == "Setup" and source.startswith("# @title") and 'display-mode: "form"' in source.splitlines()[0]
