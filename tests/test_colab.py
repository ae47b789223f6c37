"""The notebook as a stranger runs it in Colab: the .ipynb executed cell by cell with nbclient,
stopping at the first error as *Run all* does, with a stand-in google.colab (tests/fake_colab)
in a temporary working directory; and the hardware choices, with the GPU faked.

Each run is a whole notebook on the tiny ci preset, so the cases share runs where one run can
show two things."""

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from conftest import FAKE_COLAB, NOTEBOOK, REPO
from helpers.config import detect_preset
from helpers.training.hardware import detect_hardware
from helpers.ui import colab as colab_helpers

RUN = "ci-2m"  # the ci preset's run folder (helpers.checkpoints.runs.run_folder)
_IGNORED_ANYWHERE = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", "*.zip")


def leave_out(folder: str, names: list[str]) -> set[str]:
    """What a copy of the repository leaves out: the run's data/ and checkpoints/ (not helpers/checkpoints/)."""
    top = {"data", "checkpoints"} if Path(folder).resolve() == REPO else set()
    return set(_IGNORED_ANYWHERE(folder, names)) | (top & set(names))


class Colab:
    """A Colab runtime: /content (the working directory, wiped by a reset), a Drive that outlives it."""

    def __init__(self, tmp_path: Path, drive_mode: str = "ok"):
        self.root = tmp_path
        self.content = tmp_path / "content"
        self.cloud = tmp_path / "cloud"  # the user's Google Drive; mounted at content/drive
        self.log = tmp_path / "colab.log"
        self.drive_dir = self.content / "drive" / "MyDrive" / "gpt2-124m-shakespeare"
        self.drive_mode = drive_mode
        self.content.mkdir()

    def reset(self) -> None:
        """A runtime reset: the working directory and the mount go; Drive stays."""
        shutil.rmtree(self.content)
        self.content.mkdir()

    def events(self) -> list:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def run_all(
        self, form: dict | None = None, extra_cells: tuple = (), **settings
    ) -> tuple[str, Exception | None, nbformat.NotebookNode]:
        """Run all cells, the Settings form edited as a user would: (text shown, error that stopped it, notebook)."""
        nb = nbformat.read(NOTEBOOK, as_version=4)
        for name, value in (form or {}).items():
            pattern = re.compile(rf"^{name} = .*?(  # @param.*)$", re.M)
            cell = next(c for c in nb.cells if c.cell_type == "code" and pattern.search(c.source))
            cell.source = pattern.sub(lambda m: f"{name} = {value!r}{m.group(1)}", cell.source)
        nb.cells += [nbformat.v4.new_code_cell(code) for code in extra_cells]
        shutil.copy(NOTEBOOK, self.content / NOTEBOOK.name)  # the notebook arrives alone
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("GPT2_") or k in ("GPT2_DATA_DIR", "GPT2_DATA_URL")
        }
        env.update(
            PYTHONPATH=str(FAKE_COLAB),
            FAKE_COLAB_LOG=str(self.log),
            FAKE_DRIVE=str(self.cloud),
            FAKE_DRIVE_MODE=self.drive_mode,
            GPT2_DRIVE_DIR=str(self.drive_dir),
            OMP_NUM_THREADS="1",
            PYTHONHASHSEED="0",
            PYDEVD_DISABLE_FILE_VALIDATION="1",
            MPLBACKEND="Agg",
        )
        env.update({f"GPT2_{k.upper()}": str(v) for k, v in settings.items()})
        client = NotebookClient(
            nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(self.content)}}
        )
        error = None
        try:
            client.execute(env=env)
        except CellExecutionError as e:
            error = e
        text = "\n".join(
            out.get("text", "") + "".join(out.get("traceback", []))
            for cell in nb.cells
            for out in cell.get("outputs", [])
        )
        return text, error, nb


def make_origin(tmp_path: Path) -> Path:
    """A git repository holding this working tree, standing in for the project on GitHub."""
    origin = tmp_path / "origin"
    shutil.copytree(REPO, origin, ignore=leave_out)
    git_env = dict(
        os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t"
    )
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(["git", *cmd], cwd=origin, env=git_env, check=True, capture_output=True)
    return origin


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_uploaded_zip_and_a_drive_that_says_no(tmp_path):
    """(a) the clone fails, GitHub's ZIP was uploaded: found, unpacked; (c) Drive refuses: local checkpoints, loudly."""
    colab = Colab(tmp_path, drive_mode="refuse")
    tree = tmp_path / "zip" / "gpt2-124m-shakespeare-main"
    shutil.copytree(REPO, tree, ignore=leave_out)
    shutil.make_archive(str(colab.content / "gpt2-124m-shakespeare-main"), "zip", tree.parent)
    text, error, _ = colab.run_all(form={"REPO_URL": str(tmp_path / "no-such-repo")}, preset="ci", use_drive="true")
    assert error is None, str(error)[-3000:]
    project = colab.content / "gpt2-124m-shakespeare-main"
    assert f"project: {project}  (Colab: True)" in text
    assert "GOOGLE DRIVE DID NOT MOUNT (MessageError: Error: credential propagation was unsuccessful)" in text
    assert "run the Settings cell again, allow access to Google Drive" in text
    checkpoints = project / "checkpoints" / RUN
    assert {"model_final.pt", "model_final_full.pt", "model_best.pt", "model_final_fp16.pt"} <= {
        p.name for p in checkpoints.iterdir()
    }
    assert f"{checkpoints} (this runtime only)" in text
    assert "THESE FILES ARE ONLY ON THIS RUNTIME" in text
    # no clone was tried: the ZIP came first; nothing downloaded unasked; nothing flushed to a Drive never mounted
    assert "git clone" not in text
    assert [e[0] for e in colab.events()] == ["mount"]
    assert not (colab.cloud / "MyDrive").exists()


@pytest.mark.slow
def test_nothing_to_find_stops_at_the_first_cell_with_the_ways_out(tmp_path):
    """(b) the clone fails and nothing was uploaded: one clear message, and no other cell runs."""
    colab = Colab(tmp_path)
    text, error, nb = colab.run_all(form={"REPO_URL": str(tmp_path / "no-such-repo")}, preset="ci", use_drive="true")
    assert isinstance(error, CellExecutionError) and error.ename == "ProjectNotFound"
    for way in ("set REPO_URL", "Download ZIP", "copy the project's folder to Google Drive"):
        assert way in error.evalue
    assert "git clone" in text and "does not exist" in text  # git's reason, in one line
    assert "CalledProcessError" not in text
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].execution_count is not None and all(c.execution_count is None for c in code[1:])
    assert colab.events() == []


@pytest.mark.slow
def test_drive_runs_resume_after_a_reset_and_share_drive(tmp_path):
    """(f) the download and float16 hint after the end; (e) a CPU and a ci run on one Drive; (d) reset resumes."""
    colab = Colab(tmp_path)
    shutil.copytree(REPO, colab.content / "my copy", ignore=leave_out)  # any folder name will do
    hint = "colab.download(half_path)"  # as the download cell prints it, run after the Finish cell
    text, error, _ = colab.run_all(form={"DOWNLOAD": True}, extra_cells=(hint,), preset="ci", use_drive="true")
    assert error is None, str(error)[-3000:]
    assert f"project: {colab.content / 'my copy'}" in text
    on_drive = colab.cloud / "MyDrive" / "gpt2-124m-shakespeare" / "checkpoints" / RUN
    assert f"{colab.drive_dir / 'checkpoints' / RUN} (Google Drive)" in text
    assert {"model_final.pt", "model_final_full.pt", "model_best.pt", "model_final_fp16.pt", "loss.png"} <= {
        p.name for p in on_drive.iterdir()
    }
    assert f"for the float16 copy: {hint}" in text
    final, half = colab.content / "model_final.pt", colab.content / "model_final_fp16.pt"
    mount = str(colab.content / "drive")
    # The download is handed over (from a local copy) before Drive is unmounted; the hint mounts it again.
    assert colab.events() == [
        ["mount", mount, "ok"],
        ["download", str(final), sha256(on_drive / "model_final.pt")],
        ["flush_and_unmount", [mount]],
        ["mount", mount, "ok"],
        ["download", str(half), sha256(on_drive / "model_final_fp16.pt")],
    ]
    assert sha256(final) == sha256(on_drive / "model_final.pt")

    # A runtime reset, then a CPU run (chosen in the form) cloned from the fork set in the form: its
    # own folder on the same Drive, the ci run's files left alone.
    colab.reset()
    ci_files = {p.name: sha256(p) for p in on_drive.glob("*.pt")}
    origin = make_origin(tmp_path)
    text, error, _ = colab.run_all(
        form={"REPO_URL": str(origin), "PRESET": "cpu"}, max_steps=2, eval_iters=1, sample_tokens=5, async_save="false"
    )
    assert error is None, str(error)[-3000:]
    assert f"project: {colab.content / 'origin'}" in text
    cpu_run = on_drive.parent / "cpu-7m"
    assert "starting from scratch" in text and (cpu_run / "model_final.pt").exists()
    assert "NO GPU ON THIS RUNTIME" in text and "Runtime > Change runtime type > T4 GPU" in text
    assert "these files are on your Google Drive" in text
    assert {p.name: sha256(p) for p in on_drive.glob("*.pt")} == ci_files

    # Another reset: Run all again resumes the ci run from Drive instead of starting over.
    colab.reset()
    text, error, _ = colab.run_all(form={"REPO_URL": str(origin)}, preset="ci", use_drive="true")
    assert error is None, str(error)[-3000:]
    assert f"resumed from {colab.drive_dir / 'checkpoints' / RUN / 'model_final_full.pt'} at step 20" in text


@pytest.mark.parametrize("mode,reason", [("timeout", "ValueError: mount failed"), ("refuse", "MessageError")])
def test_drive_that_says_no_falls_back_loudly(fake_colab, monkeypatch, tmp_path, capsys, mode, reason):
    monkeypatch.setenv("FAKE_DRIVE_MODE", mode)
    fallback = tmp_path / "content" / "checkpoints" / RUN
    drive_dir = tmp_path / "content" / "drive" / "MyDrive" / "gpt2"
    assert colab_helpers.checkpoints_on_drive(drive_dir, RUN, fallback) == (fallback, False)
    out = capsys.readouterr().out
    assert (
        f"GOOGLE DRIVE DID NOT MOUNT ({reason}" in out
        and str(fallback) in out
        and "a runtime reset deletes them" in out
    )
    monkeypatch.setenv("FAKE_DRIVE_MODE", "ok")  # the user runs the Settings cell again and allows access
    assert colab_helpers.checkpoints_on_drive(drive_dir, RUN, fallback) == (drive_dir / "checkpoints" / RUN, True)
    assert (tmp_path / "cloud" / "MyDrive" / "gpt2" / "checkpoints" / RUN).is_dir()


def test_mount_point_is_the_folder_above_mydrive():
    assert colab_helpers.mount_point_of("/content/drive/MyDrive/gpt2/checkpoints/x.pt") == Path("/content/drive")
    assert colab_helpers.mount_point_of("/content/gpt2/checkpoints/x.pt") is None


@pytest.mark.parametrize(
    "capability,name,preset,dtype",
    [
        ((7, 5), "Tesla T4", "t4", "float16"),
        ((8, 0), "NVIDIA A100-SXM4-40GB", "a100", "bfloat16"),
        ((8, 9), "NVIDIA L4", "a100", "bfloat16"),
        ((9, 0), "NVIDIA H100 80GB HBM3", "a100", "bfloat16"),
    ],
)
def test_gpu_choice_by_compute_capability(monkeypatch, capability, name, preset, dtype):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # as a T4 answers
    assert detect_preset() == preset
    hw = detect_hardware()
    assert (hw.device, hw.dtype) == ("cuda", dtype)
    assert hw.peak_flops is not None


def test_cpu_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert detect_preset() == "cpu"
    hw = detect_hardware()
    assert (hw.device, hw.dtype, hw.peak_flops) == ("cpu", "float32", None)
    with pytest.raises(ValueError, match="GPT2_DTYPE='fp8'"):
        detect_hardware(dtype="fp8")
