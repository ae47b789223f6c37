import ast
import dataclasses
import json
import os
import re
import typing
from pathlib import Path

import pytest
import torch

from conftest import SCRIPT
from helpers.checkpoints.runs import model_folder
from helpers.config import PRESETS, SHAKESPEARE_URL, TrainConfig, make_config
from helpers.errors import SettingError
from helpers.training.hardware import detect_hardware, make_deterministic


def test_presets_exist_with_policy_defaults():
    assert set(PRESETS) >= {"cpu", "t4", "a100", "ci"}
    cfg = make_config("t4", env={})
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size) == (12, 12, 768, 1024)
    assert cfg.checkpoint_dir == "checkpoints" and cfg.keep_last >= 2 and cfg.save_every_minutes > 0
    assert make_config("cpu", env={}).n_embd < 768


def test_preset_from_environment_and_overrides():
    cfg = make_config(
        env={
            "GPT2_PRESET": "ci",
            "GPT2_MAX_STEPS": "7",
            "GPT2_LEARNING_RATE": "0.5",
            "GPT2_COMPILE": "true",
            "GPT2_CHECKPOINT_DIR": "/some/dir",
        }
    )
    assert cfg.preset == "ci"
    assert cfg.max_steps == 7 and cfg.learning_rate == 0.5 and cfg.compile is True
    assert cfg.checkpoint_dir == "/some/dir"
    assert cfg.n_embd == PRESETS["ci"]["n_embd"]


def test_unknown_field_is_an_error():
    with pytest.raises(ValueError, match="GPT2_MAX_STEP: unknown setting"):
        make_config("ci", env={"GPT2_MAX_STEP": "5"})


def test_unknown_preset_is_an_error():
    with pytest.raises(ValueError, match="unknown preset"):
        make_config(env={"GPT2_PRESET": "tpu"})


def test_config_is_plain_data():
    d = TrainConfig().to_dict()
    assert all(isinstance(v, (int, float, str, bool)) for v in d.values())


@pytest.mark.parametrize(
    "var,value,expected",
    [
        # a wrong type: the value is quoted as given
        ("GPT2_MAX_STEPS", "ten", "'ten': expected int"),
        ("GPT2_LEARNING_RATE", "fast", "'fast': expected float"),
        ("GPT2_COMPILE", "maybe", "'maybe': expected a boolean"),
        # out of range
        ("GPT2_SAVE_EVERY", "0", "0: must be at least 1"),
        ("GPT2_KEEP_LAST", "0", "0: must be at least 1"),
        ("GPT2_LEARNING_RATE", "-1.0", "-1.0: must not be negative"),
        ("GPT2_N_EMBD", "33", "33: must be a multiple of n_head"),
        ("GPT2_PATIENCE", "-1", "-1: must not be negative"),
        ("GPT2_TRAIN_FRACTION", "0.0", "0.0: must be above 0 and at most 1"),
        ("GPT2_TRAIN_FRACTION", "1.5", "1.5: must be above 0 and at most 1"),
        ("GPT2_SAVE_EVERY_MINUTES", "-5.0", "-5.0: must not be negative"),
        # not a finite number: nan passes every comparison, inf every lower bound (both were accepted)
        ("GPT2_LEARNING_RATE", "nan", "nan: must be a finite number"),
        ("GPT2_MIN_DELTA", "inf", "inf: must be a finite number"),
        ("GPT2_TARGET_LOSS", "-inf", "-inf: must be a finite number"),
        ("GPT2_DROPOUT", "NaN", "nan: must be a finite number"),
        ("GPT2_DEVICE", "mps", "'mps': expected auto, cpu, cuda or cuda:N"),
        ("GPT2_DATA_URL", " ", "' ': must name the training text"),
        ("GPT2_DATA_ENCODING", "latin-9x", "'latin-9x': not a text encoding Python knows"),
        ("GPT2_DATA_ENCODING", "hex", "'hex': not a text encoding Python knows"),
        ("GPT2_TEXT_FIELD", "", "'': must name the field or column"),
    ],
)
def test_wrong_type_or_out_of_range_is_an_error(var, value, expected):
    with pytest.raises(SettingError, match=f"^{re.escape(var)}={re.escape(expected)}") as info:
        make_config("ci", env={var: value})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "device,gpus,problem",
    [
        ("cuda", 0, "this machine has no CUDA GPU (or torch was built without CUDA); use auto or cpu"),
        ("cuda:1", 1, "this machine has 1 CUDA GPU(s), numbered from 0"),
    ],
)
def test_a_gpu_that_is_not_there_is_a_setting_error(monkeypatch, device, gpus, problem):
    """GPT2_DEVICE=cuda without a GPU was torch's AssertionError: Torch not compiled with CUDA enabled."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    with pytest.raises(SettingError) as info:
        detect_hardware(make_config("ci", env={"GPT2_DEVICE": device}).device)
    assert str(info.value) == f"GPT2_DEVICE={device!r}: {problem}"


TRAIN_TOKENS = 301_966  # tiny Shakespeare's training split in GPT-2 tokens (tests/test_data.py)


@pytest.mark.parametrize("preset", ["t4", "a100"])
def test_gpu_presets_are_sized_in_epochs(preset):
    cfg = make_config(preset, env={})
    epoch_steps = TRAIN_TOKENS / cfg.tokens_per_step
    assert cfg.eval_every / epoch_steps <= 0.25  # the validation minimum is seen
    assert cfg.eval_iters == 0  # the whole validation split: exact, so patience does not fire on noise
    assert cfg.patience > 0 and cfg.dropout > 0
    assert cfg.warmup_steps / epoch_steps <= 1.5
    assert 5 <= cfg.max_steps / epoch_steps <= 30
    assert cfg.save_every_minutes == 10


def test_starting_from_gpt2_takes_the_finetune_settings_and_the_environment_still_wins():
    scratch = make_config("t4", env={})
    tuned = make_config("t4", env={"GPT2_INIT_FROM": "gpt2"})
    assert tuned.init_from == "gpt2"
    assert tuned.learning_rate < scratch.learning_rate and tuned.max_steps < scratch.max_steps
    assert tuned.patience > 0 and tuned.batch_size == scratch.batch_size
    assert make_config("t4", env={"GPT2_INIT_FROM": "gpt2", "GPT2_LEARNING_RATE": "0.001"}).learning_rate == 0.001
    from_form = make_config("t4", env={}, form={"init_from": "gpt2"})  # the notebook's one setting
    assert (from_form.init_from, from_form.learning_rate) == ("gpt2", tuned.learning_rate)


def test_form_values_override_the_preset_and_variables_override_the_form():
    form = dict(
        preset="auto", init_from="scratch", use_drive=True, download=False, hub_repo="", data_url=SHAKESPEARE_URL
    )
    untouched = make_config("cpu", env={}, form=form)
    assert untouched == make_config("cpu", env={})  # a form left at its defaults changes nothing
    assert make_config("ci", env={}, form=form).use_drive is False  # the preset's value, not the form's default
    changed = make_config(
        env={}, form=dict(form, preset="cpu", use_drive=False, download=True, hub_repo="me/m", data_url="mytext.txt")
    )
    assert (changed.preset, changed.use_drive, changed.download, changed.hub_repo, changed.data_url) == (
        "cpu",
        False,
        True,
        "me/m",
        "mytext.txt",
    )
    env = {"GPT2_PRESET": "ci", "GPT2_USE_DRIVE": "true", "GPT2_HUB_REPO": "you/y"}
    both = make_config(env=env, form=dict(form, preset="cpu", use_drive=False, hub_repo="me/m"))
    assert (both.preset, both.use_drive, both.hub_repo) == ("ci", True, "you/y")
    with pytest.raises(ValueError, match="form field 'max_step': unknown setting"):
        make_config("ci", env={}, form={"max_step": 5})


def test_the_notebooks_form_defaults_are_the_settings_defaults():
    """An untouched form means "the preset's value" only if each field's default is the setting's (DATA_URL too)."""
    source = SCRIPT.read_text()
    settings_cell = source[source.index("# ## Settings") : source.index("# ## Data")]
    form = dict(re.findall(r"^([A-Z_]+) = (.+?)  # @param", settings_cell, re.M))
    assert set(form) == {"PRESET", "INIT_FROM", "USE_DRIVE", "DOWNLOAD", "HUB_REPO", "SPACE_REPO", "DATA_URL"}
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name, value in form.items():
        assert ast.literal_eval(value) == ("auto" if name == "PRESET" else defaults[name.lower()]), name


PRESET_SNAPSHOT = Path(__file__).with_name("preset_snapshot.json")


@pytest.mark.parametrize("key", sorted(json.loads(PRESET_SNAPSHOT.read_text())))
def test_every_preset_resolves_as_recorded(key):
    """Each preset's settings (and run folder) as main's code made them before TrainConfig's defaults moved.

    preset_snapshot.json was written by make_config(preset, env={"GPT2_INIT_FROM": init}) and
    runs.model_folder on main at 95cac5a, so changing where a default lives cannot change a run.
    """
    preset, init = key.split("/")
    cfg = make_config(preset, env={"GPT2_INIT_FROM": init})
    assert dict(cfg.to_dict(), model_folder=model_folder(cfg)) == json.loads(PRESET_SNAPSHOT.read_text())[key]


def test_train_config_defaults_are_the_t4_preset():
    """TrainConfig() is a real run's settings (the GPU schedule on a T4), not a preset of its own."""
    assert TrainConfig().to_dict() == make_config("t4", env={}).to_dict()


def _readme_settings() -> list[tuple[list[str], str]]:
    """(field names, default column) of each row of docs/settings.md's Settings table."""
    text = (Path(__file__).parents[1] / "docs" / "settings.md").read_text()
    table = text.split("| setting | default | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split(" | ") for line in table.strip().splitlines()[1:]]
    return [(re.findall(r"`(\w+)`", row[0]), row[1]) for row in rows]


def _readme_value(text: str, kind: type) -> object:
    """A value as docs/settings.md writes it: on/off, empty, a number with its unit, a `string`."""
    text = text.strip().strip("`")
    words = {"on": True, "off": False, "empty": "", "tiny Shakespeare's URL": SHAKESPEARE_URL}
    if text in words:
        return kind(words[text])
    return kind(text.split()[0]) if kind in (int, float) else text


@pytest.mark.parametrize(
    "names,column",
    [row for row in _readme_settings() if row[1] != "by preset"],
    ids=lambda v: ",".join(v) if isinstance(v, list) else None,
)
def test_readme_settings_table_matches_the_code(names, column):
    """The Settings table's defaults are TrainConfig's, and its "(cpu: ...)" notes each preset's values."""
    hints = typing.get_type_hints(TrainConfig)
    default, _, notes = column.partition(" (")
    said = {preset: default for preset in ("t4", "a100", "cpu")}  # the user's presets: default unless noted
    for note in notes.rstrip(")").split("; "):
        presets, colon, values = note.partition(": ")
        if colon:
            said.update({preset.strip(): values for preset in presets.split(",")})
    configs = {"default": TrainConfig()} | {preset: make_config(preset, env={}) for preset in said}
    for preset, cfg in configs.items():
        values = (default if preset == "default" else said[preset]).split(", ")
        assert len(values) == len(names), f"docs/settings.md row {names}: {values}"
        for name, value in zip(names, values):
            assert getattr(cfg, name) == _readme_value(value, hints[name]), f"{preset}: {name}"


def test_deterministic_sets_every_switch_and_fixes_the_thread_count(monkeypatch):
    """make_deterministic: strict deterministic kernels, cuBLAS's fixed workspace, cuDNN's deterministic mode
    without its search or its attention, and torch's thread count set explicitly (MKL's dynamic mode off)."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # records its absence, so the test leaves none behind
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    cudnn, cuda = torch.backends.cudnn, torch.backends.cuda
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    flags = (cudnn.deterministic, cudnn.benchmark, cuda.cudnn_sdp_enabled(), torch.get_num_threads())
    try:
        assert make_deterministic() == flags[3] == torch.get_num_threads()
        assert (
            torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
        )
        assert (cudnn.deterministic, cudnn.benchmark, cuda.cudnn_sdp_enabled()) == (True, False, False)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        cudnn.deterministic, cudnn.benchmark = flags[0], flags[1]
        cuda.enable_cudnn_sdp(flags[2])
