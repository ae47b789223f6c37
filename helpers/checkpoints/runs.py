"""Where a run's checkpoints go: one folder per kind of run, named for what is trained and on what.

Runs of different model sizes (or from scratch and fine-tuned), or on different texts, cannot
share a folder: resuming refuses a folder of another model's checkpoints, or of another text's.
Each kind gets its own subfolder, e.g. `gpt2-124m-scratch`, `gpt2-124m-finetune`, `cpu-7m`, and
on a text other than tiny Shakespeare the text's label after it (`cpu-7m-sonnets-1f2e3d4c`), so
they never block each other, while the same run started again (after a runtime reset) finds its
own folder and resumes.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from helpers.config import MODEL_FIELDS, PRESETS, TrainConfig
from helpers.data_source import data_label
from helpers.documents import Reading
from helpers.model import ARCHITECTURE, GPTConfig, param_count

SHAPE = tuple(name for name in ARCHITECTURE if name in MODEL_FIELDS)  # the architecture a run sets
GPT2_SMALL = GPTConfig()  # GPT-2 124M


def size_label(n: int) -> str:
    """124m, 7m, 2m, 300k: a parameter count in a folder name."""
    return f"{n / 1e6:.0f}m" if n >= 1e6 else f"{n / 1e3:.0f}k"


def run_folder(cfg: TrainConfig) -> str:
    """The checkpoint subfolder for what cfg trains, and on which text: different models or texts never share one."""
    label = data_label(cfg.data_url, Reading(cfg.text_field, cfg.data_encoding))
    return f"{model_folder(cfg)}-{label}" if label else model_folder(cfg)


def model_folder(cfg: TrainConfig) -> str:
    """The part of run_folder that names the model: gpt2-124m-scratch, cpu-7m, ..."""
    if cfg.init_from != "scratch":  # the pretrained model's shape, its context cropped to block_size
        source = "gpt2-124m" if cfg.init_from == "gpt2" else re.sub(r"[^\w.-]+", "-", Path(cfg.init_from).name)
        context = "" if cfg.block_size == GPT2_SMALL.block_size else f"-ctx{cfg.block_size}"
        return f"{source}{context}-finetune"
    shape = {name: getattr(cfg, name) for name in SHAPE}
    size = size_label(param_count(cfg.model_config()))
    if shape == {name: getattr(GPT2_SMALL, name) for name in SHAPE}:
        return f"gpt2-{size}-scratch"
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    preset_shape = {name: PRESETS.get(cfg.preset, {}).get(name, defaults[name]) for name in SHAPE}
    if shape == preset_shape:
        return f"{cfg.preset}-{size}"  # the preset's own model: cpu-7m, ci-2m
    bias = "" if cfg.bias else "-nobias"
    return f"gpt-{size}-{cfg.n_layer}l{cfg.n_head}h{cfg.n_embd}d-ctx{cfg.block_size}{bias}"


def local_checkpoint_dir(cfg: TrainConfig, repo_root: Path) -> Path:
    """checkpoints/<run folder> in the repository by default; a checkpoint_dir set by the user as it is."""
    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "checkpoint_dir")
    if cfg.checkpoint_dir == default:
        return Path(repo_root) / default / run_folder(cfg)
    return Path(repo_root) / cfg.checkpoint_dir  # an absolute checkpoint_dir stays as it is
