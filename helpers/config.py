"""Training settings: one dataclass, presets chosen by hardware, overrides from the environment.

nbval cannot pass arguments to a notebook, so the notebook reads its settings from the
environment: `GPT2_PRESET` picks a preset (default: by hardware) and `GPT2_<FIELD>` overrides
any field, e.g. `GPT2_MAX_STEPS=20 GPT2_CHECKPOINT_DIR=/some/dir`.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass

from helpers.errors import SettingError
from helpers.model import GPTConfig
from helpers.training.hardware import gpu_capability, is_ampere_or_newer

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
ENV_PREFIX = "GPT2_"
# Variables with the prefix that are not fields: the preset itself, and the repository URL the
# notebook's setup cell reads before helpers/ can be imported.
ENV_NOT_FIELDS = {"GPT2_PRESET", "GPT2_REPO_URL"}
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")  # the devices training runs on
# GPTConfig's fields that a run sets; the tokenizer fixes vocab_size.
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(GPTConfig) if f.name != "vocab_size")


@dataclass
class TrainConfig:
    """Everything a training run needs to know; saved in every checkpoint as `config`.

    The defaults are the t4 preset's: GPT-2 124M on the GPU schedule (see the note above PRESETS).
    """

    preset: str = "t4"
    # the model trained from scratch: GPTConfig's fields, flat so that GPT2_N_LAYER=... can set them
    n_layer: int = GPTConfig.n_layer
    n_head: int = GPTConfig.n_head
    n_embd: int = GPTConfig.n_embd
    block_size: int = GPTConfig.block_size
    dropout: float = 0.2
    bias: bool = GPTConfig.bias
    init_from: str = "scratch"  # "scratch", or "gpt2": OpenAI's weights (a hub name or a local folder)
    # data
    data_dir: str = "data"
    data_url: str = SHAKESPEARE_URL  # the training text: an http(s) or file:// URL, or a path (a file, folder or glob)
    text_field: str = "text"  # the JSON Lines field or CSV/TSV column that holds each document's text
    data_encoding: str = ""  # the text files' encoding, any Python codec (latin-1, cp1252); empty: UTF-8, UTF-16 by BOM
    # optimisation: tokens per step = batch_size * block_size * grad_accum_steps
    batch_size: int = 8  # micro-batch, per process
    grad_accum_steps: int = 2  # micro-batches per optimizer step, over all processes
    max_steps: int = 370
    learning_rate: float = 6e-4
    min_lr: float = 6e-5
    warmup_steps: int = 20
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    train_fraction: float = 1.0  # train on the first fraction of the training split (experiments)
    # evaluation and stopping
    eval_every: int = 4
    eval_iters: int = 0  # validation batches per evaluation; 0: the whole split, in order (exact)
    target_loss: float = 0.0  # stop once the validation loss is at or below it; 0 disables
    patience: int = 8  # stop after so many evaluations without an improvement of more than min_delta; 0 disables
    min_delta: float = 0.01  # the least drop in validation loss that resets patience
    # checkpoints
    checkpoint_dir: str = "checkpoints"
    save_every: int = 200
    save_every_minutes: float = 10.0  # also save when this long has passed since the last save; 0 disables
    keep_last: int = 2
    resume: str = "auto"  # "auto" (newest full checkpoint in checkpoint_dir), "never", or a path
    stop_after_steps: int = 0  # end this session after so many steps (and save); 0: run to max_steps
    async_save: bool = True  # write periodic checkpoints in the background
    use_drive: bool = True  # in Colab: keep checkpoint_dir on Google Drive
    drive_dir: str = "/content/drive/MyDrive/gpt2-124m-shakespeare"
    hub_repo: str = ""  # "you/name": upload the final model to this Hugging Face repo (needs a token)
    space_repo: str = ""  # "you/name": make a static Space that runs the final model in the browser (needs a token)
    download: bool = False  # in Colab: also send model_final.pt to this computer through the browser
    # system
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    dtype: str = "auto"  # "auto", "float32", "bfloat16", "float16"
    compile: bool = False
    deterministic: bool = False  # deterministic kernels and a fixed CPU thread count: a resume continues bit for bit
    seed: int = 1337
    log_every: int = 4
    sample_tokens: int = 200
    best_sample_tokens: int = 24  # tokens of text at each new best validation loss, kept in run.samples; 0: none

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # nan or inf would pass every range check below
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingError(f"GPT2_{field.name.upper()}={value}: must be a finite number")
        positive = (
            "n_layer",
            "n_head",
            "n_embd",
            "block_size",
            "batch_size",
            "grad_accum_steps",
            "max_steps",
            "eval_every",
            "save_every",
            "keep_last",
            "log_every",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingError(f"GPT2_{name.upper()}={getattr(self, name)}: must be at least 1")
        for name in (
            "learning_rate",
            "min_lr",
            "warmup_steps",
            "weight_decay",
            "grad_clip",
            "dropout",
            "target_loss",
            "stop_after_steps",
            "sample_tokens",
            "best_sample_tokens",
            "eval_iters",
            "patience",
            "min_delta",
            "save_every_minutes",
        ):
            if getattr(self, name) < 0:
                raise SettingError(f"GPT2_{name.upper()}={getattr(self, name)}: must not be negative")
        if not 0 < self.train_fraction <= 1:
            raise SettingError(f"GPT2_TRAIN_FRACTION={self.train_fraction}: must be above 0 and at most 1")
        if not self.data_url.strip():
            raise SettingError(f"GPT2_DATA_URL={self.data_url!r}: must name the training text (a URL or a path)")
        if not self.text_field:
            raise SettingError("GPT2_TEXT_FIELD='': must name the field or column that holds the text")
        if self.data_encoding:
            try:
                text_codec = getattr(codecs.lookup(self.data_encoding), "_is_text_encoding", True)  # not hex, rot13
            except LookupError:
                text_codec = False
            if not text_codec:
                raise SettingError(
                    f"GPT2_DATA_ENCODING={self.data_encoding!r}: not a text encoding Python knows (e.g. cp1252)"
                )
        if not DEVICE.fullmatch(self.device):
            raise SettingError(f"GPT2_DEVICE={self.device!r}: expected auto, cpu, cuda or cuda:N")
        if self.n_embd % self.n_head:
            raise SettingError(f"GPT2_N_EMBD={self.n_embd}: must be a multiple of n_head ({self.n_head})")

    def model_config(self) -> GPTConfig:
        """The GPTConfig of the model these settings train from scratch."""
        return GPTConfig(**{name: getattr(self, name) for name in MODEL_FIELDS})

    @property
    def tokens_per_step(self) -> int:
        """Tokens in one optimizer step, over all micro-batches and processes."""
        return self.batch_size * self.block_size * self.grad_accum_steps

    def to_dict(self) -> dict:
        """The settings as a plain dict of numbers, strings and booleans."""
        return dataclasses.asdict(self)


# Tiny Shakespeare is small: 301,966 training tokens, an epoch. GPT-2 124M memorises it within a
# few epochs, after which the validation loss rises (nanoGPT issue #493; about 4.75 at best, about
# 5.9 when over-trained). So the GPU schedule, TrainConfig's defaults, thinks in epochs: small steps
# (16,384 tokens, 18.4 steps an epoch) for many updates per epoch, an exact validation loss every 4
# steps (0.22 epoch) to see the minimum, early stopping once it has passed, and a budget of 20
# epochs that a T4 finishes in about 10 minutes at most; a KV-cached best sample costs a fraction of
# a second on a GPU. The reasons for each value are in docs/settings.md. A preset lists what differs.
PRESETS: dict[str, dict] = {
    # A small model that learns visibly in a few minutes on two CPU cores (0.85 epoch).
    "cpu": dict(
        n_layer=4,
        n_head=4,
        n_embd=128,
        block_size=128,
        dropout=0.0,
        batch_size=8,
        grad_accum_steps=1,
        max_steps=250,
        learning_rate=2e-3,
        min_lr=2e-4,
        warmup_steps=20,
        beta2=0.95,
        eval_every=50,
        eval_iters=8,
        patience=5,
        min_delta=0.0,
        save_every=100,
        save_every_minutes=0.0,
        keep_last=3,
        log_every=10,
    ),
    # GPT-2 124M on a 16 GB T4: float16, 2 micro-batches of 8 x 1024 a step: TrainConfig's defaults.
    "t4": dict(),
    # GPT-2 124M on an A100 (or L4, H100): bf16 and torch.compile, one micro-batch of 16 x 1024 a
    # step (it fits the 24 GB of an L4 as well); the same steps as t4, so the same model, sooner.
    # It finishes in minutes: periodic saves come from the clock, not the step count.
    "a100": dict(batch_size=16, grad_accum_steps=1, compile=True, save_every=1000),
    # A tiny model and a handful of steps, for tests and CI.
    "ci": dict(
        n_layer=2,
        n_head=2,
        n_embd=32,
        block_size=32,
        dropout=0.0,
        batch_size=4,
        grad_accum_steps=2,
        max_steps=20,
        learning_rate=1e-2,
        min_lr=1e-3,
        warmup_steps=2,
        beta2=0.95,
        eval_every=5,
        eval_iters=2,
        patience=0,
        min_delta=0.0,
        save_every=5,
        save_every_minutes=0.0,
        keep_last=2,
        log_every=1,
        sample_tokens=20,
        best_sample_tokens=8,
        async_save=False,
        use_drive=False,
    ),
}
# Starting from OpenAI's GPT-2 (init_from="gpt2"), over any preset: a pretrained model needs a
# gentle learning rate and over-fits within an epoch or two (nanoGPT's finetune_shakespeare uses
# 3e-5 for GPT-2 XL and 20 steps), so a short run with a low, decaying rate and a short patience.
FINETUNE: dict = dict(
    max_steps=185,
    learning_rate=1e-4,
    min_lr=1e-5,
    warmup_steps=10,
    dropout=0.1,
    patience=6,
)


def detect_preset() -> str:
    """The preset for this machine: a100 on Ampere and newer GPUs, t4 on older ones, else cpu."""
    capability = gpu_capability()
    return "cpu" if capability is None else "a100" if is_ampere_or_newer(capability) else "t4"


def _parse(name: str, text: str, kind: type) -> object:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingError(f"{name}={text!r}: expected a boolean (true/false/1/0)")
    try:
        return kind(text)
    except ValueError:
        raise SettingError(f"{name}={text!r}: expected {kind.__name__}") from None


def make_config(
    preset: str | None = None,
    env: typing.Mapping[str, str] | None = None,
    form: typing.Mapping[str, object] | None = None,
) -> TrainConfig:
    """A preset's settings, then the notebook's form values, then `GPT2_*` variables from env (default: os.environ).

    A form value equal to the field's default ("auto" for the preset) means "the preset's value",
    so an untouched form changes nothing; a variable wins over the form, so scripts and nbval
    set what they need whatever the form says.
    """
    env = os.environ if env is None else env
    form = dict(form or {})
    form_preset = form.pop("preset", "auto")
    preset = preset or env.get("GPT2_PRESET") or (form_preset if form_preset != "auto" else None) or detect_preset()
    if preset not in PRESETS:
        raise SettingError(f"GPT2_PRESET={preset!r}: unknown preset; choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset], preset=preset)
    if env.get("GPT2_INIT_FROM", form.get("init_from", "scratch")).strip() != "scratch":
        values.update(FINETUNE)  # a pretrained start: settings for fine-tuning, under the form and variables
    hints = typing.get_type_hints(TrainConfig)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for field, value in form.items():
        if field not in defaults or field == "preset":
            raise SettingError(f"form field {field!r}: unknown setting")
        if value != defaults[field]:
            values[field] = value
    fields = set(defaults)
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX) or var in ENV_NOT_FIELDS:
            continue
        field = var[len(ENV_PREFIX) :].lower()
        if field not in fields or field == "preset":
            raise SettingError(f"{var}: unknown setting; known settings: {', '.join(sorted(fields - {'preset'}))}")
        values[field] = _parse(var, text, hints[field])
    return TrainConfig(**values)
