# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Train GPT-2 124M on Shakespeare
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/gpt2-notebook/gpt2-124m-shakespeare/blob/main/notebooks/train_gpt2_124m_colab.ipynb)
#
# Run all cells. On a Colab T4 or A100 this trains GPT-2 124M on tiny Shakespeare, saves
# checkpoints as it goes (on Google Drive in Colab), and ends with `model_final.pt`, the file to
# deploy on Hugging Face: the model of the lowest validation loss of the run. A run is at most 20
# passes over the plays (epochs) and stops early once the model starts memorising them: about
# 4-9 minutes of training on a T4 and 1-3 on an A100 (estimates), plus a minute of setup. If the
# runtime resets, run all cells again: training resumes where the last checkpoint left it.
# Without a GPU it says so loudly and trains a small model instead.
# The forms at the top of the first two code cells hold what you may want to change.
#
# The model, the data and the checkpoint code live in `helpers/`; the training loop is here.

# %% [markdown]
# ## Setup
# Find the project's code (the `helpers/` package). In Colab the notebook arrives alone, so this
# cell looks, in order: next to or above the notebook; in any folder of the working directory (or
# one level down) holding `helpers/`; in a `.zip` of the repository uploaded to the working
# directory (GitHub's *Code > Download ZIP*), which it unpacks; in the Drive folder if Drive is
# already mounted; and last it clones `REPO_URL` (set it to your fork). It installs only what
# Colab lacks (never torch or ipywidgets: Colab's own builds match its GPU drivers).

# %%
REPO_URL = "https://github.com/gpt2-notebook/gpt2-124m-shakespeare.git"  # @param {type:"string"}

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_URL = os.environ.get("GPT2_REPO_URL", REPO_URL)  # a variable wins over the form, as in Settings
DRIVE_DIR = Path(os.environ.get("GPT2_DRIVE_DIR", "/content/drive/MyDrive/gpt2-124m-shakespeare"))
try:
    import google.colab  # noqa: F401  (present only in Colab)

    IN_COLAB = True
except ImportError:
    IN_COLAB = False


def is_project(folder: Path) -> bool:
    return (folder / "helpers" / "__init__.py").is_file()


def project_below(folder: Path) -> Path | None:
    """folder itself, or the first folder one or two levels below it, that holds helpers/."""
    return next(
        (
            m.parent.parent
            for pattern in ("", "*/", "*/*/")
            for m in sorted(folder.glob(pattern + "helpers/__init__.py"))
        ),
        None,
    )


def unzip_project(archive: Path) -> Path | None:
    """Unpack an uploaded ZIP of the project where it lies; the project folder, or None for another ZIP."""
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        if not any(n.endswith("helpers/__init__.py") for n in names):
            return None
        one_folder = len({n.split("/", 1)[0] for n in names}) == 1  # GitHub's: name-main/...
        dest = archive.parent if one_folder else archive.with_suffix("")
        z.extractall(dest)
    return project_below(dest)


def clone_project(url: str, dest: Path) -> Path | None:
    """git clone url into dest; None (git's reason printed in one line) if that fails."""
    try:
        git = subprocess.run(
            ["git", "clone", "--quiet", "--depth", "1", url, str(dest)],
            capture_output=True,
            text=True,
            env=dict(os.environ, GIT_TERMINAL_PROMPT="0"),
        )  # never wait for a password
    except OSError as e:
        git = subprocess.CompletedProcess([], 1, "", str(e))
    if git.returncode != 0:
        print(f"git clone {url} failed: {(git.stderr.strip().splitlines() or ['?'])[-1]}")
        return None
    return dest if is_project(dest) else None


def find_project(url: str) -> Path | None:
    here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
    cwd = Path.cwd()
    return (
        next((p for p in (here, *here.parents) if is_project(p)), None)
        or project_below(cwd)
        or next(filter(None, map(unzip_project, sorted(cwd.glob("*.zip")))), None)
        or (project_below(DRIVE_DIR) if DRIVE_DIR.parent.is_dir() else None)  # Drive mounted
        or clone_project(url, cwd / Path(url.rstrip("/")).stem)
    )


class ProjectNotFound(RuntimeError):
    pass


def ways_out(url: str) -> str:
    return (
        f"this notebook's code (the helpers/ folder) is not here, and cloning {url} failed. Do one of these, "
        f"then Run all again:\n 1. set REPO_URL at the top of this cell to your fork's URL;\n 2. upload the "
        f"repository's ZIP (GitHub: Code > Download ZIP) to {Path.cwd()} with the file pane on the left;\n "
        f"3. copy the project's folder to Google Drive as {DRIVE_DIR} and mount Drive (file pane > Mount Drive)."
    )


REPO_ROOT = find_project(REPO_URL)
if REPO_ROOT is None:
    raise ProjectNotFound(ways_out(REPO_URL))
if IN_COLAB:
    missing = [p for p in ("tiktoken", "tqdm") if importlib.util.find_spec(p) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
sys.path.insert(0, str(REPO_ROOT))
if os.environ.get("RANK", "0") == "0":  # under torchrun, the first process speaks for all
    print(f"project: {REPO_ROOT}  (Colab: {IN_COLAB})")

# %% [markdown]
# ## Settings
# The form at the top of this cell holds what a Colab user usually changes; a field left at its
# default means "the preset's value". The preset follows the hardware (`a100` for Ampere and
# newer GPUs, `t4` for older ones, `cpu` without a GPU). `INIT_FROM = "gpt2"` fine-tunes OpenAI's
# GPT-2 124M instead of training from scratch. `DATA_URL` is the text to train on: tiny
# Shakespeare unless you change it to your own (an `https://` URL, a path, or the name of a file
# uploaded to `/content` with the file pane on the left). `HUB_REPO` (`you/name`) uploads the
# final model to the Hugging Face Hub. Every other setting is a field of `TrainConfig`
# (`helpers/config.py`): set `GPT2_<SETTING>` in the environment, e.g.
# `os.environ["GPT2_MAX_STEPS"] = "500"` in a cell above; such a variable wins over the form too.
#
# `USE_DRIVE` keeps checkpoints on Google Drive: a runtime reset wipes `/content`, and with the
# files on Drive, running all cells again resumes training instead of starting over. Mounting
# asks for permission; if Drive says no (declined, a permission left unticked, nobody there to
# click within two minutes), training goes on with local checkpoints and a warning. Each kind of
# run (model size, from scratch or fine-tuned, the text) has its own folder, shown in the table.
# A setting that cannot work stops here with one line naming it.
# `DOWNLOAD` also sends `model_final.pt` through the browser at the end.

# %%
PRESET = "auto"  # @param ["auto", "t4", "a100", "cpu"]
INIT_FROM = "scratch"  # @param ["scratch", "gpt2"]
USE_DRIVE = True  # @param {type:"boolean"}
DOWNLOAD = False  # @param {type:"boolean"}
HUB_REPO = ""  # @param {type:"string"}
DATA_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"  # @param {type:"string"}

from helpers.errors import SettingError, short_errors

short_errors()  # the project's own errors as one line each, run as a script or in a notebook

import torch

from helpers.checkpoints.runs import local_checkpoint_dir, param_count, run_folder
from helpers.config import make_config
from helpers.data_source import data_folder
from helpers.training.distributed import init_processes
from helpers.training.hardware import detect_hardware, enable_tf32
from helpers.ui import colab
from helpers.ui.display import table

cfg = make_config(
    form=dict(
        preset=PRESET,
        init_from=INIT_FROM,
        use_drive=USE_DRIVE,
        download=DOWNLOAD,
        hub_repo=HUB_REPO,
        data_url=DATA_URL.strip(),
    )
)
procs = init_processes(cfg.device)
hw = detect_hardware(cfg.device, cfg.dtype, procs.local_rank if procs.world_size > 1 else None)
if hw.dtype != "float16":
    enable_tf32()
if cfg.grad_accum_steps % procs.world_size:
    raise SettingError(
        f"GPT2_GRAD_ACCUM_STEPS={cfg.grad_accum_steps}: must be a multiple of the {procs.world_size} processes"
    )
if not torch.cuda.is_available() and procs.is_main:
    print(colab.no_gpu_banner(cfg.preset, param_count(cfg)))
checkpoint_dir, on_drive = local_checkpoint_dir(cfg, REPO_ROOT), False
if IN_COLAB and cfg.use_drive:
    checkpoint_dir, on_drive = colab.checkpoints_on_drive(cfg.drive_dir, run_folder(cfg), fallback=checkpoint_dir)
data_dir = data_folder(REPO_ROOT / cfg.data_dir, cfg.data_url)  # tiny Shakespeare's, or a folder of this text's own
if procs.is_main:
    print(
        table(
            [
                ("preset", cfg.preset),
                ("device", f"{hw.name} x {procs.world_size}" if procs.world_size > 1 else hw.name),
                ("precision", hw.dtype),
                ("model", f"{cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, context {cfg.block_size}"),
                ("batch", f"{cfg.batch_size} x {cfg.block_size} tokens x {cfg.grad_accum_steps} micro-batches"),
                ("tokens per step", f"{cfg.tokens_per_step:,}"),
                ("steps", cfg.max_steps),
                ("compile", cfg.compile),
                ("data", cfg.data_url),
                (
                    "checkpoints",
                    f"{checkpoint_dir}{' (Google Drive)' if on_drive else ' (this runtime only)' if IN_COLAB else ''}",
                ),
            ]
        )
    )

# %% [markdown]
# ## Data
# Tiny Shakespeare (1.1 MB of plays), or your text (`DATA_URL`), tokenised with GPT-2's own BPE:
# for the plays, 301,966 training and 36,059 validation tokens (the first 90% of the text and the
# last 10%). Made once and reused while their sha256 matches `meta.json`; every full checkpoint
# records these hashes, so a run never resumes on other text. Batches are drawn by a seeded
# generator whose state goes into every checkpoint, so a resumed run sees exactly the batches it
# would have seen. One pass over the training tokens is an *epoch*: a 124M model memorises the
# plays within a few, so the run is planned in epochs (printed below) and ends once the
# validation loss stops improving.

# %%
import torch.distributed as dist

from helpers.data import data_identity, load_splits, prepare_data, read_meta

if procs.is_main:
    meta = prepare_data(data_dir, cfg.data_url)
    print(
        f"{data_dir / 'input.txt'}: train {meta['train_tokens']:,} tokens, val {meta['val_tokens']:,} tokens"
        f"{' (reused)' if meta['reused'] else ''}"
    )
if procs.world_size > 1:
    dist.barrier()  # the others wait until the main process has made the files
    meta = read_meta(data_dir)
data_id = data_identity(meta)  # what this run trains on, in every full checkpoint
train_tokens, val_tokens = load_splits(data_dir, cfg.block_size, cfg.train_fraction)  # each at least one window
sampler = torch.Generator().manual_seed(cfg.seed)
steps_per_epoch = len(train_tokens) / cfg.tokens_per_step  # an epoch: as many tokens as the training split holds
if procs.is_main:
    print(
        table(
            [
                ("an epoch", f"{len(train_tokens):,} training tokens = {steps_per_epoch:.1f} steps"),
                (
                    "training",
                    f"at most {cfg.max_steps} steps = {cfg.max_steps / steps_per_epoch:.1f} epochs"
                    + (f", stopping after {cfg.patience} evaluations without improvement" if cfg.patience else ""),
                ),
                (
                    "evaluation",
                    f"every {cfg.eval_every} steps = {cfg.eval_every / steps_per_epoch:.2f} epoch, over "
                    + (
                        f"all {len(val_tokens):,} validation tokens"
                        if not cfg.eval_iters
                        else f"{cfg.eval_iters} batches"
                    ),
                ),
            ]
        )
    )

# %% [markdown]
# ## Model
# GPT-2 from `helpers/model.py` (nanoGPT's design): with the default sizes it is GPT-2 124M,
# trained from scratch. With `init_from = "gpt2"` training starts from OpenAI's pretrained
# GPT-2 124M instead (downloaded from the Hugging Face Hub, or read from a local folder).

# %%
from helpers.hf.folders import load_hf_gpt2
from helpers.model import GPT
from helpers.training.rng import seed_everything

seed_everything(cfg.seed)
if cfg.init_from == "scratch":
    model_config = cfg.model_config()
    model = GPT(model_config).to(hw.device)
else:  # "gpt2" or a transformers folder, its context cropped to block_size
    model = load_hf_gpt2(cfg.init_from, block_size=cfg.block_size, dropout=cfg.dropout).to(hw.device)
    model_config = model.config  # the pretrained model's size: resuming checks files against it
if procs.is_main:
    print(f"{model.num_params() / 1e6:.2f}M parameters")

# %% [markdown]
# ## Optimizer
# AdamW (fused on CUDA), all parameters in one group, so that a full checkpoint restores into
# the checkpoint summary's `torch.optim.AdamW(model.parameters())`; the price is weight decay on
# biases and LayerNorm gains too, which at 0.1 costs little. On a T4 training runs in float16,
# whose small range needs a GradScaler to keep gradients from underflowing; bf16 and fp32 need none.

# %%
optimizer = model.configure_optimizer(
    cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), fused=hw.device_type == "cuda"
)
scaler = torch.amp.GradScaler(hw.device_type, enabled=hw.dtype == "float16")

# %% [markdown]
# ## Resume
# If `checkpoint_dir` holds full checkpoints, training continues from the newest one that loads
# and passes its checks (a damaged file is reported and the next newest is tried). Everything
# comes back: weights, optimizer, GradScaler, step, best loss, the early-stopping count, the data
# sampler and every random generator, so the resumed run is the run that was interrupted. A folder
# that holds `model_final_full.pt` holds a finished run: it is not trained again. A checkpoint
# made on other text is refused: its best loss was measured on another validation text.
# `GPT2_RESUME=never` starts over; `GPT2_RESUME=<path>` continues from that file, finished or not.
# First the folder is made and tried with a test file, and the run takes its lock: a second run
# on the same folder (another tab, another runtime on the same Drive) stops here with who holds it.

# %%
from helpers.checkpoints.fileio import check_writable, finish_replacements, remove_stale_temporaries
from helpers.checkpoints.format import load_weights
from helpers.checkpoints.lock import hold_folder
from helpers.checkpoints.policy import check_best, final_files_missing, find_resume_checkpoint
from helpers.data import check_same_data
from helpers.errors import OutputError
from helpers.training.rng import restore_rng_state
from helpers.training.stopping import EarlyStopping

step, best_val_loss, best_step = 0, float("inf"), None
train_loss, val_loss = float("nan"), None
history = {"train": [], "val": []}
early_stopping = EarlyStopping(cfg.patience, cfg.min_delta)
stop_reason = None  # why training ended, once it has
if globals().get("writer") is not None:  # a re-run in the same kernel: an interrupted run's
    globals()["writer"].close()  # last write must finish before its temporary file is swept up
read_only = check_writable(checkpoint_dir) if procs.is_main else None  # why it cannot be written, if so
folder_lock = hold_folder(checkpoint_dir) if procs.is_main and not read_only else None  # until the Finish cell
if folder_lock:
    for target in finish_replacements(checkpoint_dir):
        print(f"finished replacing {target.name}, which an interrupted write had left half-way")
    for stale in remove_stale_temporaries(checkpoint_dir):
        print(f"removed {stale.name}, left by an interrupted write")
report = print if procs.is_main else lambda _: None
resumed = find_resume_checkpoint(checkpoint_dir, cfg.resume, model_config, report=report)
if resumed:  # never onto other text, and before anything in the folder is repaired
    check_same_data(*resumed, data_id, cfg.data_url, cfg.resume, report=report)
if resumed and not read_only:
    resumed = check_best(checkpoint_dir, *resumed, model_config, report=report, repair=procs.is_main)
finished = (
    resumed and resumed[1].get("stop_reason") and cfg.resume == "auto" and not final_files_missing(checkpoint_dir)
)
if read_only and not finished:  # a finished run only reads its folder; training must write there
    raise OutputError(
        checkpoint_dir, f"cannot be written ({read_only}); make it writable or choose another checkpoint_dir"
    )
if resumed:
    resume_path, ckpt = resumed
    load_weights(model, resume_path, ckpt)
    optimizer.load_state_dict(ckpt["optimizer_state_dict"])
    for group in optimizer.param_groups:  # this run's settings win over the file's (lr is set per step)
        group.update(weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2))
    if ckpt.get("scaler_state_dict"):
        scaler.load_state_dict(ckpt["scaler_state_dict"])
    step, train_loss, val_loss = ckpt["step"], ckpt["loss"], ckpt.get("val_loss")
    # A full checkpoint made elsewhere may have only the summary's keys: resume it, less exactly.
    best_val_loss, best_step = ckpt.get("best_val_loss", float("inf")), ckpt.get("best_step")
    if "early_stopping" in ckpt:
        early_stopping.load_state_dict(ckpt["early_stopping"])
    # A finished run stays finished, its whole history kept for the chart; an explicit path trains
    # on from its step, so the history after that step is dropped (it will be made again).
    stop_reason = ckpt.get("stop_reason") if cfg.resume == "auto" else None
    history = ckpt.get("history", history)
    if stop_reason is None:
        history = {split: [p for p in points if p[0] <= step] for split, points in history.items()}
    if "sampler_state" in ckpt:
        sampler.set_state(ckpt["sampler_state"])
    if "rng_state" in ckpt:
        restore_rng_state(ckpt["rng_state"])
    del ckpt
    if procs.is_main:
        print(f"resumed from {resume_path} at step {step} (best validation loss {best_val_loss:.4f})")
elif procs.is_main:
    print("starting from scratch")

# %% [markdown]
# ## Speed-ups and several GPUs
# `torch.compile` fuses the model's operations (on by default on Ampere and newer; if it fails,
# training carries on uncompiled). Under `torchrun --nproc_per_node=N` the model is wrapped in
# DistributedDataParallel; only process 0 writes checkpoints and shows progress.

# %%
from torch.nn.parallel import DistributedDataParallel

from helpers.data import get_batch, sample_offsets
from helpers.training.hardware import compile_model

raw_model = model  # what checkpoints save: never the compiled or distributed wrapper
if cfg.compile:
    # tried on a batch of its own generator, so the training batches stay as they were
    trial = sample_offsets(torch.Generator().manual_seed(0), len(train_tokens), cfg.block_size, cfg.batch_size)
    model = compile_model(model, *get_batch(train_tokens, trial, cfg.block_size, hw.device), hw)
compiled = model is not raw_model  # False where compiling failed and training goes on uncompiled
if procs.world_size > 1:
    model = DistributedDataParallel(model, device_ids=[procs.local_rank] if hw.device_type == "cuda" else None)

# %% [markdown]
# ## Train
# Each step: draw the step's batch, run `grad_accum_steps` micro-batches in mixed precision,
# clip the gradient norm, take an AdamW step at the scheduled learning rate (warm-up, then
# cosine). Every `eval_every` steps the validation loss is measured over the whole validation
# split; a new lowest loss is kept in memory as the best state (and, on a GPU, shown by a line of
# `best_sample_tokens` generated tokens). A full checkpoint
# `model_step_{step}.pt` is written in the background every `save_every` steps or every
# `save_every_minutes`, whichever comes first, with the best pair (`model_best.pt`,
# `model_best_full.pt`) brought up to date just before it; periodic files beyond `keep_last` are
# deleted. Training stops at `max_steps`, once the validation loss reaches `target_loss`, or
# after `patience` evaluations without an improvement of more than `min_delta` (early stopping):
# the model has started to memorise the plays rather than learn from them.

# %%
import contextlib
import math
import time

import numpy as np
from tqdm.auto import tqdm

from helpers.checkpoints.format import FULL, make_checkpoint
from helpers.checkpoints.policy import BestState, SaveClock, save_periodic
from helpers.checkpoints.writer import BackgroundWriter
from helpers.data import eval_offsets, get_batch, step_offsets
from helpers.training.distributed import from_main_process, mean_over_processes
from helpers.training.hardware import autocast
from helpers.training.rng import capture_rng_state
from helpers.training.stopping import improves
from helpers.ui.display import LossChart
from helpers.ui.playground import sample_line


def get_lr(step: int) -> float:
    """Linear warm-up to learning_rate, then cosine decay to min_lr at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    if step >= cfg.max_steps:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


@torch.no_grad()
def estimate_loss(tokens: np.ndarray, max_batches: int) -> float:
    """Mean loss per token over a split's consecutive windows: all of them, or the first max_batches batches.

    No random numbers are drawn: training's random state is untouched, and every evaluation reads
    the same text, so two evaluations differ only by the model and patience never fires on noise.
    """
    raw_model.eval()
    total, count = torch.zeros((), device=hw.device), 0
    for offsets in eval_offsets(len(tokens), cfg.block_size, cfg.batch_size, max_batches):
        x, y = get_batch(tokens, offsets, cfg.block_size, hw.device)
        with autocast(hw):
            _, loss = raw_model(x, y)
        total += loss.float() * len(offsets)
        count += len(offsets)
    raw_model.train()
    return (total / count).item()


def full_checkpoint(loss: float, val_loss: float | None) -> dict:
    """Everything needed to resume from this moment (tensors are references, not copies)."""
    return make_checkpoint(
        FULL,
        step=step,
        model=raw_model,
        loss=loss,
        config=cfg.to_dict(),
        optimizer=optimizer,
        val_loss=val_loss,
        best_val_loss=best_val_loss,
        best_step=best_step,
        scaler_state_dict=scaler.state_dict(),
        rng_state=capture_rng_state(),
        sampler_state=sampler.get_state(),
        early_stopping=early_stopping.state_dict(),
        history=history,
        data=data_id,
    )


def why_stop() -> str | None:
    """Why training should end now, or None to go on."""
    if step >= cfg.max_steps:
        return f"reached max_steps ({cfg.max_steps})"
    if cfg.target_loss > 0 and best_val_loss <= cfg.target_loss:
        return f"validation loss reached target_loss ({cfg.target_loss})"
    if early_stopping.should_stop:
        return (
            f"early stop: {early_stopping.bad_evals} evaluations without an improvement "
            f"of more than {cfg.min_delta} (patience {cfg.patience})"
        )
    return None


def val_loss_now() -> float:
    """The validation loss, the same on every process (each must take the same decisions)."""
    return from_main_process(estimate_loss(val_tokens, cfg.eval_iters), procs)


writer = BackgroundWriter(background=cfg.async_save)
best = BestState()  # the best step's full state, in memory until a save writes it
save_clock = SaveClock(cfg.save_every, cfg.save_every_minutes)
chart = LossChart(checkpoint_dir / "loss.png", steps_per_epoch) if procs.is_main else None
flops_per_step = raw_model.flops_per_token(cfg.block_size) * cfg.tokens_per_step
session_start, session_clock = step, time.time()
if step == 0:  # the untrained model's loss, where the chart starts (about ln 50257 = 10.8)
    val_loss = val_loss_now()
    history["val"].append([0, val_loss])
    if procs.is_main:
        print(f"step 0: val loss {val_loss:.4f}")
progress = tqdm(total=cfg.max_steps, initial=step, disable=not procs.is_main or stop_reason is not None, unit="step")
t_log, steps_since_log, speed_windows = time.time(), 0, []  # (steps, seconds) of each log window
while stop_reason is None and not (cfg.stop_after_steps and step - session_start >= cfg.stop_after_steps):
    lr = get_lr(step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    # This process's share of the step's global batch (see helpers.data.step_offsets).
    rows = step_offsets(sampler, len(train_tokens), cfg.block_size, cfg.batch_size, cfg.grad_accum_steps)[
        procs.rank :: procs.world_size
    ]
    step_loss = torch.zeros((), device=hw.device)
    for micro, offsets in enumerate(rows):
        x, y = get_batch(train_tokens, offsets, cfg.block_size, hw.device)
        # Under DDP, gradients are averaged across processes on the last micro-batch only.
        last = micro == len(rows) - 1
        with model.no_sync() if procs.world_size > 1 and not last else contextlib.nullcontext():
            with autocast(hw):
                _, loss = model(x, y)
            loss = loss / len(rows)
            scaler.scale(loss).backward()
        step_loss += loss.detach()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    step += 1
    steps_since_log += 1

    if step % cfg.log_every == 0 or step % cfg.eval_every == 0 or step == cfg.max_steps:
        train_loss = mean_over_processes(step_loss, procs).item()  # the loop's only host sync
        history["train"].append([step, train_loss])
        elapsed, t_log = time.time() - t_log, time.time()
        speed_windows.append([steps_since_log, elapsed])
        tokens_per_s = steps_since_log * cfg.tokens_per_step / elapsed
        mfu = flops_per_step * steps_since_log / elapsed / (hw.peak_flops * procs.world_size) if hw.peak_flops else None
        progress.set_postfix(
            epoch=f"{step / steps_per_epoch:.2f}",
            loss=f"{train_loss:.4f}",
            lr=f"{lr:.2e}",
            tok_s=f"{tokens_per_s:,.0f}",
            mfu=f"{mfu:.1%}" if mfu is not None else "n/a",
            refresh=False,
        )
        progress.update(steps_since_log)
        if len(speed_windows) == 2 and step < cfg.max_steps and procs.is_main:  # the first window paid for warm-up
            remaining = (cfg.max_steps - step) * elapsed / steps_since_log
            progress.write(
                f"measured {elapsed / steps_since_log:.2f} s per step: at most "
                f"{remaining / 60:.0f} min for the remaining {cfg.max_steps - step} steps"
            )
        steps_since_log = 0
    if step % cfg.eval_every == 0 or step == cfg.max_steps:
        val_loss = val_loss_now()
        history["val"].append([step, val_loss])
        early_stopping.update(val_loss)
        if improves(val_loss, best_val_loss):
            best_val_loss, best_step = val_loss, step
            if procs.is_main:
                best.update(full_checkpoint(train_loss, val_loss))
        if chart:
            chart.update(history)
        if procs.is_main:
            progress.write(
                f"step {step} (epoch {step / steps_per_epoch:.2f}): val loss {val_loss:.4f} "
                f"(best {best_val_loss:.4f} at step {best_step})"
            )
            if best_step == step and cfg.best_sample_tokens:  # a new best: how the model writes now
                progress.write(sample_line(raw_model, cfg.best_sample_tokens, hw, cfg.seed))
    stop_reason = why_stop()
    if procs.is_main and stop_reason is None and save_clock.due(step):  # at the end, the final pair instead
        # copied now, written in the background while training goes on
        best_unsaved = best.take_unsaved()
        writer.save(
            full_checkpoint(train_loss, val_loss),
            lambda ckpt: save_periodic(checkpoint_dir, ckpt, cfg.keep_last, best_unsaved),
            slot="periodic",
        )
        save_clock.saved()
progress.update(steps_since_log)
progress.close()
writer.close()

# %% [markdown]
# ## Save the final model
# However training ended, the final pair holds the best step's state: `model_final.pt` (weights
# only, the one to deploy) and `model_final_full.pt` (with the optimizer and training state of
# that same step, to fine-tune or train on from exactly there). The best state comes from memory,
# or from `model_best_full.pt` when it was found before a resume. If the session stopped early
# (`stop_after_steps`), a full checkpoint keeps the work for the next run instead.

# %%
import json

from helpers.checkpoints.fileio import atomic_write_bytes
from helpers.checkpoints.format import load_checkpoint, load_weights
from helpers.checkpoints.policy import BEST_FULL, FINAL, FINAL_FULL, final_files_missing, periodic_path, save_final
from helpers.ui.display import checkpoint_table


def best_full_state() -> dict:
    """The full state of the best step: from memory, else from model_best_full.pt (found before a resume)."""
    if best_step is None:  # no evaluation gave a finite loss: the last state is all there is
        return full_checkpoint(train_loss, val_loss)
    if best.ckpt is not None and best.ckpt["step"] == best_step:
        return best.ckpt
    ckpt = load_checkpoint(checkpoint_dir / BEST_FULL, kind=FULL, mmap=False)
    if ckpt["step"] != best_step:
        raise RuntimeError(f"{checkpoint_dir / BEST_FULL}: holds step {ckpt['step']}, not the best step {best_step}")
    return ckpt


if procs.is_main:
    if stop_reason is not None:
        if step > session_start:
            final = dict(best_full_state(), stop_reason=stop_reason, history=history)  # the whole run's history
        elif final_files_missing(checkpoint_dir):
            final = load_checkpoint(checkpoint_dir / FINAL_FULL, kind=FULL, mmap=False)  # finished; a file was lost
        else:
            final = None  # a finished run, all in place
        if final is not None:
            for path in save_final(checkpoint_dir, final):
                print(f"saved {path} ({path.stat().st_size / 1e6:,.1f} MB)")
            del final
        final_path = checkpoint_dir / FINAL
        final_ckpt = load_checkpoint(final_path)
        load_weights(raw_model, final_path, final_ckpt)  # from here on, the model is the final one
        print(f"training ended: {stop_reason}")
        print(
            f"the final pair is step {final_ckpt['step']} (epoch {final_ckpt['step'] / steps_per_epoch:.2f}), "
            f"validation loss {final_ckpt.get('val_loss', float('nan')):.4f}"
        )
        last_step = max([step] + [s for s, _ in history["train"]])  # a finished run resumes at its best step
        summary = {
            "preset": cfg.preset,
            "steps": last_step,
            "epochs": last_step / steps_per_epoch,
            "tokens_per_step": cfg.tokens_per_step,
            "stop_reason": stop_reason,
            "best_step": best_step,
            "best_val_loss": best_val_loss,
            "final_step": final_ckpt["step"],
            "final_val_loss": final_ckpt.get("val_loss"),
            "session_steps": step - session_start,
            "session_seconds": time.time() - session_clock,
            "speed_windows": speed_windows,
            "device": hw.name,
            "dtype": hw.dtype,
            "compiled": compiled,
            "parameters": raw_model.num_params(),
            "flops_per_token": raw_model.flops_per_token(cfg.block_size),
            "peak_flops": hw.peak_flops,
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if hw.device_type == "cuda" else None,
        }
        if not read_only:  # a finished run in a read-only folder is only read
            atomic_write_bytes(checkpoint_dir / "run_summary.json", json.dumps(summary, indent=2).encode())
        del final_ckpt
    else:
        if not periodic_path(checkpoint_dir, step).exists():
            save_periodic(checkpoint_dir, full_checkpoint(train_loss, val_loss), cfg.keep_last, best.take_unsaved())
        print(f"stopped at step {step} of {cfg.max_steps}; run the notebook again to continue")
    chart.update(history)
    if not read_only:
        chart.save()
    print()
    print(checkpoint_table(checkpoint_dir))

# %% [markdown]
# ## Evaluate
# The loss on held-out text (the last 10% of the plays) tells how well the model generalises;
# a training loss far below it means the model is memorising. For the final model:

# %%
if procs.is_main:  # the training text measured on as many windows as the validation text has
    val_batches = len(eval_offsets(len(val_tokens), cfg.block_size, cfg.batch_size, cfg.eval_iters))
    losses = {
        name: estimate_loss(tokens, val_batches) for name, tokens in (("train", train_tokens), ("val", val_tokens))
    }
    print(f"the final model: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")

# %% [markdown]
# ## Which checkpoint is which
# The table printed above says, for each file this run wrote, what it holds and what to use it
# for: `model_final.pt` (weights only) is the one to deploy; the full checkpoints (with the
# optimizer) resume training or fine-tune from exactly their step.
#
# The optimizer's two moment estimates are twice the size of the weights, so a full checkpoint
# is about three times a deployment one; the table printed above has this run's sizes. Load a
# deployment checkpoint for inference with:
#
# ```python
# checkpoint = torch.load("model_final.pt", map_location="cpu")
# model = GPT(GPTConfig(**checkpoint["model_args"]))   # GPTConfig() for GPT-2 124M
# model.load_state_dict(checkpoint["model_state_dict"])
# model.eval()
# ```

# %% [markdown]
# ## A sample
# The trained model continues a prompt (temperature 0.8, top-k 200, a fixed seed).

# %%
from helpers.data import get_encoding

enc = get_encoding()
if procs.is_main:
    prompt = torch.tensor([enc.encode("ROMEO:")], device=hw.device)
    with autocast(hw):
        out = raw_model.generate(prompt, cfg.sample_tokens, temperature=0.8, top_k=200, seed=cfg.seed)
    print(enc.decode(out[0].tolist()))

# %% [markdown]
# ## Play with the model
# Type a prompt, pick a length and a temperature, press Generate. This uses `model_best.pt`,
# the lowest validation loss of the run. (Run as a script, the cell prints one sample instead.)

# %%
from helpers.checkpoints.format import load_model
from helpers.ui.playground import generation_panel

if procs.is_main:
    play_file = next((p for p in (checkpoint_dir / "model_best.pt", checkpoint_dir / FINAL) if p.exists()), None)
    play_model = load_model(play_file, hw.device)[0] if play_file else raw_model.eval()
    generation_panel(play_model, enc, hw.device, seed=cfg.seed)

# %% [markdown]
# ## Take the model home
# `model_final.pt` is the file to deploy; the float16 copy written here is half the size, for
# deployments that run in half precision. With Drive the files are already in your Google Drive,
# the dependable way to get them: a 500 MB download through the browser is slow and can stall.
# So the browser download happens only with `DOWNLOAD` ticked in the Settings form; either way
# this cell prints where the files are and a line to download them later.

# %%
from helpers.checkpoints.deployment import create_deployment_checkpoint

if procs.is_main and (checkpoint_dir / FINAL).exists():
    final_path = checkpoint_dir / FINAL
    half_path = checkpoint_dir / "model_final_fp16.pt"
    if not (read_only and half_path.exists()):  # the strip tool's own code
        create_deployment_checkpoint(checkpoint_dir / FINAL_FULL, half_path, dtype="float16", force=True)
    if IN_COLAB:
        colab.report_files([final_path, half_path], on_drive, send=cfg.download)
    else:
        for path in (final_path, half_path):
            print(f"{path}: {path.stat().st_size / 1e6:,.1f} MB")

# %% [markdown]
# ## Share on the Hugging Face Hub (optional)
# With `HUB_REPO` set in the Settings form (e.g. `you/gpt2-shakespeare`) and a token (the Colab
# secret `HF_TOKEN` with notebook access, or the `HF_TOKEN` variable), the final model is exported
# as a transformers GPT-2 folder, which `pipeline("text-generation", model="you/gpt2-shakespeare")`
# loads, and uploaded. Without a token this cell says why (no secret, or no access to it) and
# does nothing.

# %%
from helpers.hf.folders import export_hf
from helpers.hf.hub import hub_token, missing_token_reason, upload_to_hub

if procs.is_main and cfg.hub_repo and (checkpoint_dir / FINAL).exists():
    if hub_token() is None:
        print(f"not uploading to {cfg.hub_repo}: {missing_token_reason()}")
    else:
        folder = export_hf(checkpoint_dir / FINAL, checkpoint_dir / "hf_export", force=True)
        print(f"uploaded {folder} to {upload_to_hub(folder, cfg.hub_repo)}")

# %% [markdown]
# ## Put it on a Hugging Face Space (optional)
# With `space_repo` set (e.g. `GPT2_SPACE_REPO=you/gpt2-shakespeare-demo`) and a token, the final
# model becomes a static Space: a web page where anyone can try it, the model running in their
# browser (free to host for every account): the folder `python -m helpers.make_space` writes. It
# installs the ONNX export's packages first if they are missing. Without a token this cell says
# so and does nothing.

# %%
from helpers.hf.space import push_space
from helpers.hf.static_space import NEEDED, make_static_space

if procs.is_main and cfg.space_repo and (checkpoint_dir / FINAL).exists():
    if hub_token() is None:
        print(f"not creating the Space {cfg.space_repo}: {missing_token_reason()}")
    else:
        missing = [pip for module, pip in NEEDED.items() if importlib.util.find_spec(module) is None]
        if missing and IN_COLAB:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
        folder = make_static_space(checkpoint_dir / FINAL, checkpoint_dir / "hf_space", force=True)
        print(f"uploaded {folder} to {push_space(folder, cfg.space_repo)}")

# %% [markdown]
# ## Finish
# The run gives its checkpoint folder up (its lock), so another run may use it. In Colab, push
# everything to Google Drive before the runtime can go away (this unmounts it; a download started
# above is sent from a local copy, and `colab.download(...)` mounts Drive again).

# %%
if folder_lock:
    folder_lock.release()  # another run may use the folder now
if IN_COLAB and on_drive and procs.is_main:
    colab.flush_drive()
if procs.world_size > 1:
    dist.destroy_process_group()
