"""Colab-only code paths (clone, Drive, download) against a stand-in google.colab module, and
the hardware choices, with the GPU faked."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO, SCRIPT, script_env
from helpers.config import detect_preset
from helpers.training import detect_hardware

FAKE_COLAB = {
    "google/__init__.py": "",
    "google/colab/__init__.py": "from . import drive, files\n",
    "google/colab/drive.py": (
        "import json, os\n"
        "def _log(*event):\n"
        "    with open(os.environ['FAKE_COLAB_LOG'], 'a') as f: f.write(json.dumps(event) + '\\n')\n"
        "def mount(path): _log('mount', path)\n"
        "def flush_and_unmount(): _log('flush_and_unmount')\n"
    ),
    "google/colab/files.py": (
        "from .drive import _log\n"
        "def download(path): _log('download', path)\n"
    ),
}


def make_origin(tmp_path):
    """A git repository holding this working tree, standing in for the project on GitHub."""
    origin = tmp_path / "origin"
    ignore = shutil.ignore_patterns(".git", ".venv", "data", "checkpoints", "__pycache__", ".pytest_cache")
    shutil.copytree(REPO, origin, ignore=ignore)
    git_env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(["git", *cmd], cwd=origin, env=git_env, check=True, capture_output=True)
    return origin


def test_colab_run_clones_mounts_drive_and_downloads(tmp_path):
    fake = tmp_path / "fake"
    for name, text in FAKE_COLAB.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(text)
    content = tmp_path / "content"  # Colab's working directory; the notebook arrives alone
    content.mkdir()
    shutil.copy(SCRIPT, content / SCRIPT.name)
    origin = make_origin(tmp_path)
    drive_dir = tmp_path / "drive" / "MyDrive" / "gpt2"
    log = tmp_path / "colab.log"
    env = script_env(tmp_path / "unused", use_drive="true", drive_dir=drive_dir)
    env.update(PYTHONPATH=str(fake), FAKE_COLAB_LOG=str(log), GPT2_REPO_URL=str(origin))
    del env["GPT2_CHECKPOINT_DIR"]
    proc = subprocess.run([sys.executable, SCRIPT.name], cwd=content, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    clone = content / "origin"
    assert (clone / "helpers" / "__init__.py").exists()
    assert f"project: {clone}  (Colab: True)" in proc.stdout
    events = [json.loads(line) for line in log.read_text().splitlines()]
    checkpoints = drive_dir / "checkpoints"
    # the download is sent from a local copy: unmounting Drive at the end cannot cut it off
    assert events == [["mount", "/content/drive"], ["download", str(content / "model_final.pt")], ["flush_and_unmount"]]
    assert (content / "model_final.pt").read_bytes() == (drive_dir / "checkpoints" / "model_final.pt").read_bytes()
    assert {"model_final.pt", "model_final_full.pt", "model_best.pt", "model_final_fp16.pt", "loss.png"} <= {p.name for p in checkpoints.iterdir()}
    # a second run of the notebook (a runtime reset keeps Drive) resumes instead of starting over
    again = subprocess.run([sys.executable, SCRIPT.name], cwd=content, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {checkpoints / 'model_final_full.pt'} at step 20" in again.stdout


@pytest.mark.parametrize("capability,name,preset,dtype", [
    ((7, 5), "Tesla T4", "t4", "float16"),
    ((8, 0), "NVIDIA A100-SXM4-40GB", "a100", "bfloat16"),
    ((8, 9), "NVIDIA L4", "a100", "bfloat16"),
    ((9, 0), "NVIDIA H100 80GB HBM3", "a100", "bfloat16"),
])
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
