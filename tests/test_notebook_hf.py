"""The notebook's Hugging Face paths, run as a script: start from a pretrained GPT-2 folder, and
upload the final model to the Hub (with the Hub replaced by a stand-in)."""

import json

import pytest
import torch

from conftest import run_script
from helpers.checkpoints.storage import load_checkpoint
from helpers.hf.folders import load_hf_gpt2

pytestmark = pytest.mark.slow  # runs the notebook's .py

FAKE_HUB = """
import json, os, shutil
def _log(*event):
    with open(os.environ["FAKE_HUB_LOG"], "a") as f:
        f.write(json.dumps(event) + "\\n")
def get_token():
    return None
class HfApi:
    def __init__(self, token=None):
        _log("token", token)
    def create_repo(self, repo_id, exist_ok=False, private=False, repo_type=None, space_sdk=None):
        _log("create_repo", repo_id, exist_ok, repo_type, space_sdk)
        return "https://huggingface.co/" + repo_id
    def upload_folder(self, repo_id, folder_path, repo_type=None, commit_message=None):
        _log("upload_folder", repo_id, sorted(os.listdir(folder_path)), repo_type)
"""


@pytest.fixture
def pretrained(tmp_path):
    """A randomly initialised transformers GPT-2 of the ci preset's size, saved as a folder."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=50257)
    folder = tmp_path / "pretrained"
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_init_from_a_pretrained_folder_and_upload(tmp_path, pretrained):
    fake = tmp_path / "fake"
    (fake / "huggingface_hub").mkdir(parents=True)
    (fake / "huggingface_hub" / "__init__.py").write_text(FAKE_HUB)
    log = tmp_path / "hub.log"
    ckpt_dir = tmp_path / "ckpt"
    start = load_hf_gpt2(pretrained, block_size=32)
    proc = run_script(
        ckpt_dir,
        init_from=pretrained,
        max_steps=4,
        hub_repo="me/gpt2-test",
        space_repo="me/gpt2-space",
        extra_env={"PYTHONPATH": str(fake), "FAKE_HUB_LOG": str(log), "HF_TOKEN": "hf_fake"},
    )
    final = load_checkpoint(ckpt_dir / "model_final_full.pt")
    assert final["model_args"]["block_size"] == 32 and final["model_args"]["n_embd"] == 32
    history = final["history"]["val"]
    # the run started from the pretrained weights: its step-0 loss is theirs
    assert "step 0: val loss" in proc.stdout and history[0][0] == 0
    trained = final["model_state_dict"]["transformer.h.0.mlp.c_fc.weight"]
    assert not torch.equal(trained, start.transformer.h[0].mlp.c_fc.weight)  # and trained from there
    assert torch.allclose(trained, start.transformer.h[0].mlp.c_fc.weight, atol=0.1)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events[0] == ["token", "hf_fake"]
    assert events[1] == ["create_repo", "me/gpt2-test", True, "model", None]
    assert events[2][:2] == ["upload_folder", "me/gpt2-test"] and "model.safetensors" in events[2][2]
    assert "uploaded" in proc.stdout
    # and the Space: a static Space repository with the page, the ONNX model and the runtime
    assert events[3:5] == [["token", "hf_fake"], ["create_repo", "me/gpt2-space", True, "space", "static"]]
    assert events[5][:2] == ["upload_folder", "me/gpt2-space"] and events[5][3] == "space"
    assert {"index.html", "model.onnx", "tokenizer.json", "vendor", "README.md"} <= set(events[5][2])

    # without a token the cell says so, exports nothing and uploads nothing
    log.unlink()
    (ckpt_dir / "hf_export").rename(tmp_path / "old_export")
    (ckpt_dir / "hf_space").rename(tmp_path / "old_space")
    again = run_script(
        ckpt_dir,
        init_from=pretrained,
        max_steps=4,
        hub_repo="me/gpt2-test",
        space_repo="me/gpt2-space",
        extra_env={"PYTHONPATH": str(fake), "FAKE_HUB_LOG": str(log), "HF_TOKEN": ""},
    )
    assert "not uploading to me/gpt2-test: no Hugging Face token" in again.stdout
    assert "not creating the Space me/gpt2-space: no Hugging Face token" in again.stdout
    assert not log.exists() and not (ckpt_dir / "hf_export").exists() and not (ckpt_dir / "hf_space").exists()
