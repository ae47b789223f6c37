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
# @title Setup: find the project's code { display-mode: "form" }
REPO_URL = "https://github.com/gpt2-notebook/gpt2-124m-shakespeare.git"  # @param {type:"string"}

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_URL = os.environ.get("GPT2_REPO_URL", REPO_URL)  # a variable wins over the form, as in Settings
DRIVE_DIR = Path(os.environ.get("GPT2_DRIVE_DIR", "/content/drive/MyDrive/gpt2-124m-shakespeare"))
IN_COLAB = importlib.util.find_spec("google") is not None and importlib.util.find_spec("google.colab") is not None


def project_below(folder: Path) -> Path | None:
    """folder itself, or the first folder one or two levels below it, that holds helpers/."""
    found = [m for pattern in ("", "*/", "*/*/") for m in sorted(folder.glob(pattern + "helpers/__init__.py"))]
    return found[0].parent.parent if found else None


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
    """git clone url into dest, never waiting for a password; None (git's reason in one line) if that fails."""
    command = ["git", "clone", "--quiet", "--depth", "1", url, str(dest)]
    try:
        git = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
    except OSError as e:
        git = subprocess.CompletedProcess(command, 1, "", str(e))
    if git.returncode != 0:
        print(f"git clone {url} failed: {(git.stderr.strip().splitlines() or ['?'])[-1]}")
        return None
    return dest if (dest / "helpers" / "__init__.py").is_file() else None


def find_project(url: str) -> Path | None:
    """Where helpers/ is: next to or above this file, below the working directory, in a ZIP, on Drive, or cloned."""
    try:
        here = Path(__file__).resolve().parent  # run as a script
    except NameError:  # a notebook kernel has no __file__: where it runs
        here = Path.cwd()
    return (
        next((p for p in (here, *here.parents) if (p / "helpers" / "__init__.py").is_file()), None)
        or project_below(Path.cwd())
        or next(filter(None, map(unzip_project, sorted(Path.cwd().glob("*.zip")))), None)
        or (project_below(DRIVE_DIR) if DRIVE_DIR.parent.is_dir() else None)  # Drive mounted
        or clone_project(url, Path.cwd() / Path(url.rstrip("/")).stem)
    )


class ProjectNotFound(RuntimeError):
    pass


REPO_ROOT = find_project(REPO_URL)
if REPO_ROOT is None:
    raise ProjectNotFound(
        f"this notebook's code (the helpers/ folder) is not here, and cloning {REPO_URL} failed. Do one of these, "
        f"then Run all again:\n 1. set REPO_URL at the top of this cell to your fork's URL;\n 2. upload the "
        f"repository's ZIP (GitHub: Code > Download ZIP) to {Path.cwd()} with the file pane on the left;\n "
        f"3. copy the project's folder to Google Drive as {DRIVE_DIR} and mount Drive (file pane > Mount Drive)."
    )
if IN_COLAB:
    missing = [p for p in ("tiktoken", "tqdm") if importlib.util.find_spec(p) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
sys.path.insert(0, str(REPO_ROOT))
from helpers.training.distributed import print0  # under torchrun, the first process speaks for all

print0(f"project: {REPO_ROOT}  (Colab: {IN_COLAB})")

# %% [markdown]
# ## Settings
# The form at the top of this cell holds what a Colab user usually changes; a field left at its
# default means "the preset's value". The preset follows the hardware (`a100` for Ampere and
# newer GPUs, `t4` for older ones, `cpu` without a GPU). `INIT_FROM = "gpt2"` fine-tunes OpenAI's
# GPT-2 124M instead of training from scratch. `DATA_URL` is the text to train on: tiny
# Shakespeare unless you change it to your own (an `https://` URL, a path, or the name of a file
# uploaded to `/content` with the file pane on the left; a folder of text files, or a glob, too).
# `HUB_REPO` (`you/name`) uploads the final model to the Hugging Face Hub; `SPACE_REPO`
# (`you/name`) makes a static Space of it, a page that runs the model in the visitor's browser
# (both need the `HF_TOKEN` secret). `DOWNLOAD` also sends `model_final.pt` through the browser at
# the end. Every other setting is a field of `TrainConfig` (`helpers/config.py`): set
# `GPT2_<SETTING>` in the environment, e.g. `os.environ["GPT2_MAX_STEPS"] = "500"` in a cell
# above; such a variable wins over the form too. A setting that cannot work stops here with one
# line naming it.
#
# The cell then readies the hardware: it joins the other processes when started by `torchrun`
# (one process per GPU), turns on TF32 matrix multiplies on GPUs that have them, with
# `GPT2_DETERMINISTIC=1` makes every kernel repeat itself bit for bit (docs/checkpoints.md, "What
# is exact where"), and says loudly when there is no GPU. Last it chooses the checkpoint folder.
# `USE_DRIVE` keeps checkpoints on Google Drive: a runtime reset wipes `/content`, and with the
# files on Drive, running all cells again resumes training instead of starting over. Mounting
# asks for permission; if Drive says no (declined, a permission left unticked, nobody there to
# click within two minutes), training goes on with local checkpoints and a warning. Each kind of
# run (model size, from scratch or fine-tuned, the text) has its own folder, shown in the table.

# %%
PRESET = "auto"  # @param ["auto", "t4", "a100", "cpu"]
INIT_FROM = "scratch"  # @param ["scratch", "gpt2"]
USE_DRIVE = True  # @param {type:"boolean"}
DOWNLOAD = False  # @param {type:"boolean"}
HUB_REPO = ""  # @param {type:"string"}
SPACE_REPO = ""  # @param {type:"string"}
DATA_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"  # @param {type:"string"}

from helpers.errors import short_errors

short_errors()  # the project's own errors as one line each, run as a script or in a notebook

import torch

from helpers.checkpoints.runs import local_checkpoint_dir, run_folder
from helpers.config import make_config
from helpers.data_source import data_folder
from helpers.documents import Reading
from helpers.model import param_count
from helpers.training.distributed import init_processes
from helpers.training.hardware import detect_hardware, enable_tf32, make_deterministic
from helpers.ui import colab
from helpers.ui.display import table

cfg = make_config(
    form=dict(
        preset=PRESET,
        init_from=INIT_FROM,
        use_drive=USE_DRIVE,
        download=DOWNLOAD,
        hub_repo=HUB_REPO,
        space_repo=SPACE_REPO,
        data_url=DATA_URL.strip(),
    )
)
procs = init_processes(cfg.device, cfg.grad_accum_steps)  # one process, or one per GPU under torchrun
hw = detect_hardware(cfg.device, cfg.dtype, procs.gpu)
if hw.dtype != "float16":
    enable_tf32()
if cfg.deterministic:  # before the first CUDA matrix multiply
    print0(f"deterministic: on ({make_deterministic()} CPU threads)")
if not torch.cuda.is_available():
    print0(colab.no_gpu_banner(cfg.preset, param_count(cfg.model_config())))
checkpoint_dir, on_drive = local_checkpoint_dir(cfg, REPO_ROOT), False
if IN_COLAB and cfg.use_drive:
    checkpoint_dir, on_drive = colab.checkpoints_on_drive(cfg.drive_dir, run_folder(cfg), fallback=checkpoint_dir)
reading = Reading(cfg.text_field, cfg.data_encoding)  # how a .jsonl or .csv holds its text, the files' encoding
data_dir = data_folder(REPO_ROOT / cfg.data_dir, cfg.data_url, reading)  # tiny Shakespeare's, or this text's own
where = " (Google Drive)" if on_drive else " (this runtime only)" if IN_COLAB else ""
print0(
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
            ("checkpoints", f"{checkpoint_dir}{where}"),
        ]
    )
)

# %% [markdown]
# ## Data
# Tiny Shakespeare (1.1 MB of plays), or your text (`DATA_URL`), tokenised with GPT-2's own BPE:
# for the plays, 301,966 training and 36,059 validation tokens (the first 90% of the text and the
# last 10%). A folder, a `.jsonl` or a `.csv` holds documents (each file; each line's or row's
# `text`), separated by `<|endoftext|>` as GPT-2 was trained; with ten or more, validation is the
# last 10% of them. A big text is tokenised in a stream on every core (`python -m helpers.prepare`
# does it ahead of a run; see `docs/data.md`). Made once and reused while their sha256 matches
# `meta.json`; every full checkpoint records these hashes, so a run never resumes on other text.
# Batches are drawn by a seeded generator whose state goes into every checkpoint, so a resumed run
# sees exactly the batches it would have seen. One pass over the training tokens is an *epoch*:
# a 124M model memorises the plays within a few, so the run is planned in epochs (printed below)
# and ends once the validation loss stops improving.

# %%
from helpers.data import data_identity, load_splits, prepare_data
from helpers.training.distributed import main_process_first

with main_process_first(procs):  # under torchrun the others wait, then reuse the files process 0 made
    meta = prepare_data(data_dir, cfg.data_url, reading, cfg.block_size)
in_documents = f", {meta['documents']:,} documents" if meta.get("documents", 1) > 1 else ""
print0(
    f"{meta['text']}: train {meta['train_tokens']:,} tokens, val {meta['val_tokens']:,} tokens{in_documents}"
    f"{' (reused)' if meta['reused'] else ''}"
)
data_id = data_identity(meta)  # what this run trains on, in every full checkpoint
train_tokens, val_tokens = load_splits(data_dir, cfg.block_size, cfg.train_fraction)  # each at least one window
sampler = torch.Generator().manual_seed(cfg.seed)
steps_per_epoch = len(train_tokens) / cfg.tokens_per_step  # an epoch: as many tokens as the training split holds
stopping_text = f", stopping after {cfg.patience} evaluations without improvement" if cfg.patience else ""
eval_text = f"all {len(val_tokens):,} validation tokens" if not cfg.eval_iters else f"{cfg.eval_iters} batches"
print0(
    table(
        [
            ("an epoch", f"{len(train_tokens):,} training tokens = {steps_per_epoch:.1f} steps"),
            (
                "training",
                f"at most {cfg.max_steps} steps = {cfg.max_steps / steps_per_epoch:.1f} epochs{stopping_text}",
            ),
            (
                "evaluation",
                f"every {cfg.eval_every} steps = {cfg.eval_every / steps_per_epoch:.2f} epoch, over {eval_text}",
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
    model = GPT(cfg.model_config()).to(hw.device)
else:  # "gpt2" or a transformers folder, its context cropped to block_size
    model = load_hf_gpt2(cfg.init_from, block_size=cfg.block_size, dropout=cfg.dropout).to(hw.device)
print0(f"{model.num_params() / 1e6:.2f}M parameters")

# %% [markdown]
# ## Optimizer
# AdamW (fused on CUDA), all parameters in one group, so that a full checkpoint restores into a
# plain `torch.optim.AdamW(model.parameters())` (docs/checkpoints.md); the price is weight decay on
# biases and LayerNorm gains too, which at 0.1 costs little. On a T4 training runs in float16,
# whose small range needs a GradScaler to keep gradients from underflowing; bf16 and fp32 need none.

# %%
optimizer = model.configure_optimizer(
    cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), fused=hw.device_type == "cuda"
)
scaler = torch.amp.GradScaler(hw.device_type, enabled=hw.dtype == "float16")

# %% [markdown]
# ## Resume
# One object owns the run's checkpoint folder from here on: `files`, a `Checkpointer`
# (`helpers/checkpoints/checkpointer.py`). It is given, once, every piece a full checkpoint
# holds, under the key it has in the file: the weights, the optimizer, the GradScaler, the data
# sampler, and `run`, the run's state (the step, the losses, the best step, the history, the
# early-stopping count: `helpers/training/run_state.py`). Building it takes the folder: it makes
# it, tries it with a test file and takes its lock, so a second run on the same folder (another
# tab, another runtime on the same Drive) stops here with who holds it, and it warns when the
# folder has less free space than the checkpoints will need. Then, if the folder holds
# full checkpoints, it restores everything from the newest one that loads and passes its checks
# (a damaged file is reported and the next newest tried), random generators included, so the
# resumed run is the run that was interrupted. A folder that holds `model_final_full.pt` holds a
# finished run: it is not trained again. A checkpoint made on other text is refused: its best
# loss was measured on another validation text. `GPT2_RESUME=never` starts over;
# `GPT2_RESUME=<path>` continues from that file, finished or not.

# %%
from helpers.checkpoints.checkpointer import Checkpointer
from helpers.training.run_state import RunState

run = RunState.start(cfg)  # what the loop counts and decides, saved in every full checkpoint
pieces = dict(model_state_dict=model, optimizer_state_dict=optimizer, scaler_state_dict=scaler, sampler_state=sampler)
files = Checkpointer(checkpoint_dir, cfg, data_id, pieces, run, main=procs.is_main)  # the folder taken; resumed

# %% [markdown]
# ## Speed-ups and several GPUs
# `torch.compile` fuses the model's operations (on by default on Ampere and newer; if it fails,
# training carries on uncompiled). Under `torchrun --nproc_per_node=N` the model is wrapped in
# DistributedDataParallel; only process 0 writes checkpoints and shows progress (`print0`), and
# once the final checkpoint is written the others leave, so the cells after it run once.

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
# split (under torchrun each process measures its share of it); a new lowest loss is kept in
# memory as the best state (`files.keep_best()`; a line of `best_sample_tokens` generated
# tokens shows it, kept in the run's samples for its report). The losses, the learning rate, the
# speed and the samples also go to TensorBoard's files in the folder's `tensorboard/`
# (`helpers/ui/tensorboard.py`). What the loop counts and decides lives in `run`. A full checkpoint
# `model_step_{step}.pt` is written in the background every `save_every` steps or every
# `save_every_minutes`, whichever comes first (`files.save()`), with the best pair
# (`model_best.pt`, `model_best_full.pt`) brought up to date just before it; periodic files
# beyond `keep_last` are deleted. Training stops at `max_steps`, once the validation loss reaches
# `target_loss`, or after `patience` evaluations without an improvement of more than `min_delta`
# (early stopping): the model has started to memorise the plays rather than learn from them.

# %%
import contextlib
import math

import numpy as np

from helpers.data import eval_offsets, get_batch, step_offsets
from helpers.training.distributed import mean_over_processes, sum_over_processes
from helpers.training.hardware import autocast
from helpers.ui.display import LossChart
from helpers.ui.progress import TrainingProgress
from helpers.ui.tensorboard import TensorBoardLog


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

    Each process measures its share of the batches and the sums are added up, so every process
    gets the same value and takes the same decisions. No random numbers are drawn: training's
    random state is untouched, and every evaluation reads the same text, so two evaluations
    differ only by the model and patience never fires on noise.
    """
    raw_model.eval()
    loss_sum, windows = torch.zeros((), device=hw.device), torch.zeros((), device=hw.device)
    for offsets in procs.share(eval_offsets(len(tokens), cfg.block_size, cfg.batch_size, max_batches)):
        x, y = get_batch(tokens, offsets, cfg.block_size, hw.device)
        with autocast(hw):
            _, loss = raw_model(x, y)
        loss_sum += loss.float() * len(offsets)
        windows += len(offsets)
    raw_model.train()
    loss_sum, windows = sum_over_processes(torch.stack([loss_sum, windows]), procs)
    return (loss_sum / windows).item()


chart = LossChart(checkpoint_dir / "loss.png", steps_per_epoch)  # shown live in a notebook
board = TensorBoardLog(checkpoint_dir, run.step, enabled=procs.is_main and files.writable)
progress = TrainingProgress(cfg, run, steps_per_epoch, raw_model, hw, procs, board)
if run.step == 0:  # the untrained model's loss, where the chart starts (about ln 50257 = 10.8)
    run.val_loss = estimate_loss(val_tokens, cfg.eval_iters)
    run.history["val"].append([0, run.val_loss])
    progress.untrained(run)
session_steps = 0  # trained in this session: stop_after_steps counts them
while run.stop_reason is None and not (cfg.stop_after_steps and session_steps >= cfg.stop_after_steps):
    lr = get_lr(run.step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    # This process's share of the step's global batch (see helpers.data.step_offsets).
    rows = procs.share(step_offsets(sampler, len(train_tokens), cfg.block_size, cfg.batch_size, cfg.grad_accum_steps))
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
    run.step += 1
    session_steps += 1

    evaluate = run.step % cfg.eval_every == 0 or run.step == cfg.max_steps
    if run.step % cfg.log_every == 0 or evaluate:
        run.log_train(mean_over_processes(step_loss, procs).item())  # the loop's only host sync
        progress.logged(run, lr)
    if evaluate:
        new_best = run.log_val(estimate_loss(val_tokens, cfg.eval_iters))
        progress.evaluated(run)  # at a new best with a sample, kept in run.samples: before keep_best, to be kept
        if new_best:
            files.keep_best()  # in memory; written with the next periodic checkpoint
        chart.update(run.history)
    run.stop_reason = run.why_stop(cfg)
    if run.stop_reason is None and run.save_clock.due(run.step):  # when training ends, the final pair instead
        files.save()
progress.close(run)

# %% [markdown]
# ## Save the final model
# However training ended, the final pair holds the best step's state: `model_final.pt` (weights
# only, the one to deploy) and `model_final_full.pt` (with the optimizer and training state of
# that same step, to fine-tune or train on from exactly there). The best state comes from memory,
# or from `model_best_full.pt` when it was found before a resume; from here on the model holds
# its weights. If the session stopped early (`stop_after_steps`), a full checkpoint keeps the
# work for the next run instead. Then the table of the files in the folder, what each is for.

# %%
import json

from helpers.fileio import atomic_write_bytes
from helpers.training.distributed import leave_unless_main
from helpers.ui.display import checkpoint_table

if procs.is_main:  # process 0 writes; the others wait for it in leave_unless_main, then exit
    final_ckpt = files.finish()  # the final pair written (or kept); None while training is not over
    if final_ckpt is None:
        print(f"stopped at step {run.step} of {cfg.max_steps}; run the notebook again to continue")
    else:
        summary = progress.ended(run, final_ckpt, compiled, session_steps)  # says how training ended
        if files.writable:  # a finished run in a read-only folder is only read
            atomic_write_bytes(checkpoint_dir / "run_summary.json", json.dumps(summary, indent=2).encode())
    chart.update(run.history)
    if files.writable:
        chart.save()
    print(f"\n{checkpoint_table(checkpoint_dir)}")
procs = leave_unless_main(procs)  # from here on, one process

# %% [markdown]
# ## Evaluate
# The loss on held-out text (the last 10% of the plays) tells how well the model generalises;
# a training loss far below it means the model is memorising. How much it copies is measured
# too (`helpers/memorization.py`, docs/report.md): the share of 32-token passages of the training
# text that the model completes word for word from their first 32 tokens, beside the same for
# the validation text (the baseline), and how much of its free samples is verbatim training
# text. A finished run writes it all, with the loss chart and the samples it printed as it
# trained, to `report.md` in its folder, and the figures to `run_summary.json`.

# %%
from helpers.report_card import evaluate_model, figures_table, write_run_report

# the training text measured on as many windows as the validation text has
val_batches = len(eval_offsets(len(val_tokens), cfg.block_size, cfg.batch_size, cfg.eval_iters))
losses = {name: estimate_loss(tokens, val_batches) for name, tokens in (("train", train_tokens), ("val", val_tokens))}
with autocast(hw):
    figures = evaluate_model(
        raw_model, train_tokens, val_tokens, losses, sample_tokens=cfg.sample_tokens, seed=cfg.seed
    )
print(f"the final model: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}\n{figures_table(figures)}")
if final_ckpt is not None and files.writable:
    print(f"wrote {write_run_report(checkpoint_dir, figures, summary, run.samples)}")

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
prompt = torch.tensor([enc.encode("ROMEO:")], device=hw.device)
with autocast(hw):
    out = raw_model.generate(prompt, cfg.sample_tokens, temperature=0.8, top_k=200, seed=cfg.seed)
print(enc.decode(out[0].tolist()))

# %% [markdown]
# ## Play with the model
# Type a prompt, pick a length and a temperature, press Generate. This uses `model_best.pt`,
# the lowest validation loss of the run. Top-p, a repetition penalty (above 1: fewer loops) and
# stop strings steer the text as transformers' `generate` does (docs/sampling.md); the same
# controls are in `python -m helpers.sample` and in the Space. (Run as a script, the cell prints
# one sample instead.)

# %%
from helpers.checkpoints.policy import FINAL
from helpers.checkpoints.storage import load_model
from helpers.ui.playground import generation_panel

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
from helpers.checkpoints.policy import FINAL_FULL

if (checkpoint_dir / FINAL).exists():
    final_path = checkpoint_dir / FINAL
    half_path = checkpoint_dir / "model_final_fp16.pt"
    if files.writable or not half_path.exists():  # the strip tool's own code
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

if cfg.hub_repo and (checkpoint_dir / FINAL).exists():
    if hub_token() is None:
        print(f"not uploading to {cfg.hub_repo}: {missing_token_reason()}")
    else:
        hf_folder = export_hf(checkpoint_dir / FINAL, checkpoint_dir / "hf_export", force=True)
        print(f"uploaded {hf_folder} to {upload_to_hub(hf_folder, cfg.hub_repo)}")

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

if cfg.space_repo and (checkpoint_dir / FINAL).exists():
    if hub_token() is None:
        print(f"not creating the Space {cfg.space_repo}: {missing_token_reason()}")
    else:
        missing = [pip for module, pip in NEEDED.items() if importlib.util.find_spec(module) is None]
        if missing and IN_COLAB:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
        space_folder = make_static_space(
            checkpoint_dir / FINAL, checkpoint_dir / "hf_space", force=True, repo=cfg.space_repo
        )
        print(f"uploaded {space_folder} to {push_space(space_folder, cfg.space_repo)}")

# %% [markdown]
# ## Runs side by side
# Every run folder beside this one (other presets, fine-tunes, other texts), finished or not, in
# one table (steps, epochs, best validation loss, perplexity, extraction, time, hardware) and
# their validation curves on one chart; then TensorBoard over all of them (inline in Colab;
# run as a script, the command to start it). `python -m helpers.report --runs FOLDER` prints
# the same table.

# %%
from helpers.run_comparison import compare_runs
from helpers.ui.tensorboard import show_tensorboard

compare_runs(checkpoint_dir.parent)
show_tensorboard(checkpoint_dir.parent)

# %% [markdown]
# ## Finish
# The run gives its checkpoint folder up (its lock), so another run may use it. In Colab, push
# everything to Google Drive before the runtime can go away (this unmounts it; a download started
# above is sent from a local copy, and `colab.download(...)` mounts Drive again).

# %%
files.close()  # another run may use the folder now
if IN_COLAB and on_drive:
    colab.flush_drive()
