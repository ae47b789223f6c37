"""Bad input: one clear line naming the file and the problem, a non-zero exit, nothing lost."""

import io
import os
import pickle

import pytest
import small_disk
import torch

from conftest import TINY, save_full, tiny_full_ckpt
from helpers.checkpoints.format import CheckpointError, to_deployment
from helpers.checkpoints.policy import PeriodicFiles, periodic_checkpoints, save_best
from helpers.checkpoints.resume import find_resume_checkpoint
from helpers.checkpoints.storage import save_checkpoint
from helpers.commands.create_deployment_checkpoint import main as create_main
from helpers.commands.test_deployment_checkpoint import main as verify_main
from helpers.model import GPTConfig


class RunsCode:
    """Unpickling this would create a marker file: a stand-in for a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def make_bad(kind, path, tmp_path):
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        save_checkpoint(tiny_full_ckpt(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    elif kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "code-running pickle":
        torch.save({"step": 1, "model_state_dict": RunsCode(str(tmp_path / "PWNED"))}, path)
    elif kind == "plain pickle":
        path.write_bytes(pickle.dumps(RunsCode(str(tmp_path / "PWNED"))))
    elif kind == "missing keys":
        ckpt = tiny_full_ckpt()
        del ckpt["loss"], ckpt["config"]
        save_checkpoint(ckpt, path)
    elif kind == "not a dict":
        torch.save([1, 2, 3], path)
    return path


BAD = {
    "empty": "file is empty",
    "truncated": "not a torch checkpoint, or truncated",
    "random bytes": "not a torch checkpoint, or truncated",
    # pickle names io.open by its __module__: io up to Python 3.12, _io from 3.13
    "code-running pickle": f"refused: holds objects that are not plain data (it would call {io.open.__module__}.open)",
    "plain pickle": "not a torch checkpoint, or truncated",
    "missing keys": "missing key(s): loss, config",
    "not a dict": "holds a list, not a checkpoint dict",
}


def snapshot_dir(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("tool", ["create", "verify"])
def test_tools_reject_bad_files(kind, tool, tmp_path, capsys):
    bad = make_bad(kind, tmp_path / "model_final_full.pt", tmp_path)
    before = snapshot_dir(tmp_path)
    rc = create_main([str(bad)]) if tool == "create" else verify_main([str(bad)])
    out, err = capsys.readouterr()
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(bad) in lines[0] and BAD[kind] in lines[0]
    assert "weights_only" not in err and "can still be loaded" not in err  # never the advice to run its code
    assert snapshot_dir(tmp_path) == before  # nothing written, nothing deleted
    assert not (tmp_path / "PWNED").exists()  # the pickle's code never ran


@pytest.mark.parametrize("kind", BAD)
def test_resume_from_a_bad_path_is_refused(kind, tmp_path):
    bad = make_bad(kind, tmp_path / "model_step_5.pt", tmp_path)
    with pytest.raises(CheckpointError) as info:
        find_resume_checkpoint(tmp_path, str(bad), TINY)
    assert str(info.value).startswith(f"{bad}: ") and BAD[kind] in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("kind", BAD)
def test_auto_resume_skips_bad_files_and_reports_them(kind, tmp_path, capsys):
    save_checkpoint(tiny_full_ckpt(step=5), tmp_path / "model_step_5.pt")
    bad = make_bad(kind, tmp_path / "model_step_10.pt", tmp_path)
    path, ckpt = find_resume_checkpoint(tmp_path, "auto", TINY)
    reports = capsys.readouterr().out.splitlines()
    assert path.name == "model_step_5.pt" and ckpt["step"] == 5
    assert len(reports) == 1 and str(bad) in reports[0] and BAD[kind] in reports[0]
    assert bad.exists()


def test_deployment_checkpoint_where_full_is_needed(tmp_path, capsys):
    deploy = save_checkpoint(to_deployment(tiny_full_ckpt()), tmp_path / "model_final.pt")
    assert create_main([str(deploy), str(tmp_path / "out.pt")]) == 1
    assert "is a deployment checkpoint (no optimizer_state_dict)" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()
    with pytest.raises(CheckpointError, match="is a deployment checkpoint"):
        find_resume_checkpoint(tmp_path, str(deploy), TINY)
    assert verify_main([str(deploy), "--full", str(deploy)]) == 1
    assert "model_final.pt: is a deployment checkpoint" in capsys.readouterr().err


def test_checkpoint_of_another_model_size(tmp_path, capsys):
    other = GPTConfig(n_layer=3, n_head=2, n_embd=64, block_size=16)
    path = save_checkpoint(tiny_full_ckpt(model_config=other), tmp_path / "model_step_5.pt")
    with pytest.raises(
        CheckpointError,
        match=r"model_step_5.pt: is a different model size: block_size 16 \(expected 32\), n_layer 3 \(expected 2\), "
        r"n_embd 64 \(expected 32\)",
    ):
        find_resume_checkpoint(tmp_path, str(path), TINY)
    with pytest.raises(CheckpointError, match="holds 1 full checkpoint.s., none of which fits this model"):
        find_resume_checkpoint(tmp_path, "auto", TINY)
    # a deployment file checked against a full checkpoint of another size
    deploy = save_checkpoint(to_deployment(tiny_full_ckpt()), tmp_path / "d.pt")
    assert verify_main([str(deploy), "--full", str(path), "--tokens", "2"]) == 1
    err = capsys.readouterr().err
    assert "tensor transformer.h.2.attn.c_attn.weight: missing from the deployment checkpoint" in err
    assert "tensor transformer.wte.weight: shape (50257, 32), full checkpoint has (50257, 64)" in err


def test_full_disk_keeps_previous_checkpoints(tmp_path, monkeypatch):
    periodic = PeriodicFiles(tmp_path, keep_last=2, expected=TINY)
    for step in (5, 10):
        periodic.save(tiny_full_ckpt(step=step))
    save_best(tmp_path, tiny_full_ckpt(step=10))
    before = snapshot_dir(tmp_path)
    small_disk.install(tmp_path, small_disk.used(tmp_path) + 1000, monkeypatch)  # full after 1,000 bytes more
    with pytest.raises(OSError, match="No space left"):
        periodic.save(tiny_full_ckpt(step=15))
    with pytest.raises(OSError, match="No space left"):
        save_best(tmp_path, tiny_full_ckpt(step=15))
    assert snapshot_dir(tmp_path) == before  # no partial file, no rotation, best untouched
    assert [s for s, _ in periodic_checkpoints(tmp_path)] == [5, 10]
    monkeypatch.undo()
    path, ckpt = find_resume_checkpoint(tmp_path, "auto", TINY)
    assert ckpt["step"] == 10


def test_full_disk_in_the_tool(tmp_path, monkeypatch, capsys):
    full = save_full(tmp_path / "model_final_full.pt")
    before = snapshot_dir(tmp_path)
    small_disk.install(tmp_path, small_disk.used(tmp_path) + 1000, monkeypatch)  # full after 1,000 bytes more
    assert create_main([str(full)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'model_final.pt'}: No space left on device"]
    assert snapshot_dir(tmp_path) == before


def test_empty_prompt_and_bad_sizes_in_the_verifier(tmp_path, capsys):
    deploy = save_checkpoint(to_deployment(tiny_full_ckpt()), tmp_path / "d.pt")
    assert verify_main([str(deploy), "--prompt", "", "--tokens", "3"]) == 0
    ckpt = torch.load(deploy, weights_only=True)
    ckpt["model_args"]["n_head"] = 5  # 32 is not a multiple of 5
    bad = save_checkpoint(ckpt, tmp_path / "bad.pt")
    capsys.readouterr()
    assert verify_main([str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.pt: model_args do not describe a GPT" in err[0]


def test_a_folder_given_as_the_checkpoint(tmp_path, monkeypatch, capsys):
    """`python -m helpers.create_deployment_checkpoint .` once printed a ValueError traceback."""
    monkeypatch.chdir(tmp_path)
    assert create_main(["."]) == 1
    assert capsys.readouterr().err.strip().splitlines() == ["error: .: is a folder, not a checkpoint file"]
    assert verify_main(["."]) == 1
    assert capsys.readouterr().err.strip().splitlines() == ["FAILED: .: is a folder, not a checkpoint file"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "change,problem",
    [
        (
            {"format": "someone-else"},
            "is in another program's format ('someone-else'), not a checkpoint of this project",
        ),
        ({"kind": "deployment"}, "says it is a deployment checkpoint, but holds optimizer_state_dict"),
        ({"kind": "full", "optimizer_state_dict": None}, "missing key(s): optimizer_state_dict"),
    ],
)
def test_what_a_file_says_it_is_is_checked(change, problem, tmp_path, capsys):
    ckpt = dict(tiny_full_ckpt(), **change)
    if change.get("optimizer_state_dict", 0) is None:
        del ckpt["optimizer_state_dict"]
    bad = save_checkpoint(ckpt, tmp_path / "model_final_full.pt")
    assert create_main([str(bad)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {bad}: {problem}"
    assert not (tmp_path / "model_final.pt").exists()
