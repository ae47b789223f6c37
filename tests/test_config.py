import pytest

from helpers.config import PRESETS, TrainConfig, make_config


def test_presets_exist_with_policy_defaults():
    assert set(PRESETS) >= {"cpu", "t4", "a100", "ci"}
    cfg = make_config("t4", env={})
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size) == (12, 12, 768, 1024)
    assert (cfg.save_every, cfg.keep_last, cfg.checkpoint_dir) == (500, 3, "checkpoints")
    assert make_config("cpu", env={}).n_embd < 768


def test_preset_from_environment_and_overrides():
    cfg = make_config(env={"GPT2_PRESET": "ci", "GPT2_MAX_STEPS": "7", "GPT2_LEARNING_RATE": "0.5",
                           "GPT2_COMPILE": "true", "GPT2_CHECKPOINT_DIR": "/some/dir"})
    assert cfg.preset == "ci"
    assert cfg.max_steps == 7 and cfg.learning_rate == 0.5 and cfg.compile is True
    assert cfg.checkpoint_dir == "/some/dir"
    assert cfg.n_embd == PRESETS["ci"]["n_embd"]


def test_unknown_field_is_an_error():
    with pytest.raises(ValueError, match="GPT2_MAX_STEP: unknown setting"):
        make_config("ci", env={"GPT2_MAX_STEP": "5"})


@pytest.mark.parametrize("var,value,expected", [
    ("GPT2_MAX_STEPS", "ten", "expected int"),
    ("GPT2_LEARNING_RATE", "fast", "expected float"),
    ("GPT2_COMPILE", "maybe", "expected a boolean"),
])
def test_wrong_type_is_an_error(var, value, expected):
    with pytest.raises(ValueError, match=f"{var}='{value}': {expected}"):
        make_config("ci", env={var: value})


def test_unknown_preset_is_an_error():
    with pytest.raises(ValueError, match="unknown preset"):
        make_config(env={"GPT2_PRESET": "tpu"})


def test_config_is_plain_data():
    d = TrainConfig().to_dict()
    assert all(isinstance(v, (int, float, str, bool)) for v in d.values())


@pytest.mark.parametrize("var,value,expected", [
    ("GPT2_SAVE_EVERY", "0", "must be at least 1"),
    ("GPT2_KEEP_LAST", "0", "must be at least 1"),
    ("GPT2_LEARNING_RATE", "-1.0", "must not be negative"),
    ("GPT2_N_EMBD", "33", "must be a multiple of n_head"),
])
def test_out_of_range_is_an_error(var, value, expected):
    with pytest.raises(ValueError, match=f"{var}={value}: {expected}"):
        make_config("ci", env={var: value})


def test_form_values_override_the_preset_and_variables_override_the_form():
    form = dict(preset="auto", init_from="scratch", use_drive=True, download=False, hub_repo="")
    untouched = make_config("cpu", env={}, form=form)
    assert untouched == make_config("cpu", env={})  # a form left at its defaults changes nothing
    assert make_config("ci", env={}, form=form).use_drive is False  # the preset's value, not the form's default
    changed = make_config(env={}, form=dict(form, preset="cpu", use_drive=False, download=True, hub_repo="me/m"))
    assert (changed.preset, changed.use_drive, changed.download, changed.hub_repo) == ("cpu", False, True, "me/m")
    env = {"GPT2_PRESET": "ci", "GPT2_USE_DRIVE": "true", "GPT2_HUB_REPO": "you/y"}
    both = make_config(env=env, form=dict(form, preset="cpu", use_drive=False, hub_repo="me/m"))
    assert (both.preset, both.use_drive, both.hub_repo) == ("ci", True, "you/y")
    with pytest.raises(ValueError, match="form field 'max_step': unknown setting"):
        make_config("ci", env={}, form={"max_step": 5})
