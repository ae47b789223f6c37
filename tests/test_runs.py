"""The checkpoint folder of each kind of run (helpers/checkpoints/runs.py)."""

from pathlib import Path

import pytest

from helpers.checkpoints.runs import local_checkpoint_dir, run_folder
from helpers.config import make_config
from helpers.data_source import data_label
from helpers.model import GPT, GPTConfig, param_count


@pytest.mark.parametrize(
    "preset,env,folder",
    [
        ("t4", {}, "gpt2-124m-scratch"),
        ("a100", {}, "gpt2-124m-scratch"),  # the same model on another GPU resumes the same run
        ("cpu", {}, "cpu-7m"),
        ("ci", {}, "ci-2m"),
        ("t4", {"GPT2_INIT_FROM": "gpt2"}, "gpt2-124m-finetune"),
        ("cpu", {"GPT2_INIT_FROM": "gpt2"}, "gpt2-124m-ctx128-finetune"),
        ("ci", {"GPT2_N_EMBD": "64"}, "gpt-3m-2l2h64d-ctx32"),
        ("ci", {"GPT2_BIAS": "false"}, "gpt-2m-2l2h32d-ctx32-nobias"),
        ("t4", {"GPT2_MAX_STEPS": "5", "GPT2_BATCH_SIZE": "2"}, "gpt2-124m-scratch"),  # training settings: same run
    ],
)
def test_run_folder_names_what_is_trained(preset, env, folder):
    assert run_folder(make_config(preset, env=env)) == folder


def test_models_that_cannot_resume_each_other_get_different_folders():
    shapes = [
        {},
        {"GPT2_N_HEAD": "4"},
        {"GPT2_N_LAYER": "3"},
        {"GPT2_BLOCK_SIZE": "64"},
        {"GPT2_BIAS": "false"},
        {"GPT2_INIT_FROM": "gpt2"},
    ]
    folders = [run_folder(make_config("ci", env=env)) for env in shapes]
    assert len(set(folders)) == len(folders), folders


def test_param_count_is_the_models():
    cfg = make_config("ci", env={})
    model = GPT(GPTConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, block_size=cfg.block_size))
    assert param_count(cfg.model_config()) == model.num_params()


def test_default_checkpoint_dir_gets_the_run_folder_an_explicit_one_does_not(tmp_path):
    assert local_checkpoint_dir(make_config("ci", env={}), tmp_path) == tmp_path / "checkpoints" / "ci-2m"
    explicit = make_config("ci", env={"GPT2_CHECKPOINT_DIR": str(tmp_path / "mine")})
    assert local_checkpoint_dir(explicit, Path("/repo")) == tmp_path / "mine"
    relative = make_config("ci", env={"GPT2_CHECKPOINT_DIR": "ckpt"})
    assert local_checkpoint_dir(relative, tmp_path) == tmp_path / "ckpt"


def test_a_run_on_other_text_gets_a_folder_of_its_own(data_dir, tmp_path):
    """A Shakespeare run and a run on other text never meet; the same text by path or URL is the same run."""
    mine = tmp_path / "my poems.txt"
    mine.write_text("Shall I compare thee to a summer's day?\n" * 50)
    label = data_label(str(mine))
    assert label.startswith("my-poems-")
    copy = (data_dir / "input.txt").as_uri()  # the plays by another address are the plays
    shakespeare = [make_config("ci", env={}), make_config("ci", env={"GPT2_DATA_URL": copy})]
    assert [run_folder(cfg) for cfg in shakespeare] == ["ci-2m", "ci-2m"]
    for url in (str(mine), mine.as_uri()):
        assert run_folder(make_config("ci", env={"GPT2_DATA_URL": url})) == f"ci-2m-{label}"
        assert (
            local_checkpoint_dir(make_config("t4", env={"GPT2_DATA_URL": url}), tmp_path)
            == tmp_path / "checkpoints" / f"gpt2-124m-scratch-{label}"
        )
