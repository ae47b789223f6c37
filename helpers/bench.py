"""Benchmarks that print numbers: training speed, checkpoint I/O, and a check for GPU machines.

    python -m helpers.bench train --preset cpu        # tokens/s and MFU of the notebook's training step
    python -m helpers.bench checkpoint-io             # GPT-2 124M: strip, load, and the stall of a save
    python -m helpers.bench gpu-check                 # on a CUDA machine: t4-like and a100 speed, save/resume
    python -m helpers.bench outcome --preset t4       # the notebook run to its end: epochs, minutes, best loss

These are measurements, not tests: each figure is printed beside its limit with PASS or OVER, and
the exit status is 0 unless something failed to run (gpu-check: or its save/resume check failed).
Training batches come from random token ids, not Shakespeare: speed does not depend on the text,
and the bench then needs neither the data nor a network.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from helpers.checkpoint import (
    FULL,
    CheckpointError,
    load_model,
    load_weights,
    make_checkpoint,
    save_checkpoint,
    tensor_identity,
)
from helpers.cli import fail
from helpers.config import PRESETS, TrainConfig, detect_preset, make_config
from helpers.create_deployment_checkpoint import create_deployment_checkpoint
from helpers.data import get_batch, sample_offsets, step_offsets
from helpers.display import table
from helpers.model import GPT, GPTConfig
from helpers.policy import (
    BackgroundWriter,
    find_resume_checkpoint,
    save_periodic,
    snapshot,
)
from helpers.training import (
    Hardware,
    autocast,
    capture_rng_state,
    compile_model,
    detect_hardware,
    enable_tf32,
    learning_rate,
    restore_rng_state,
)

REPO = Path(__file__).resolve().parents[1]
GB = 1e9
# The limits of issue 7 for GPT-2 124M's checkpoints.
STRIP_SECONDS, STRIP_RSS_GB, LOAD_SECONDS, STALL_FRACTION = 1.5, 0.8, 0.2, 0.25


# --- the training step, as the notebook's loop takes it ---------------------------------------


@dataclass
class Trainer:
    """A model ready to train the notebook's way: its optimizer, GradScaler and hardware."""

    cfg: TrainConfig
    hw: Hardware
    raw_model: GPT
    model: torch.nn.Module  # raw_model, or torch.compile's wrapper of it
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


def make_trainer(cfg: TrainConfig, tokens: np.ndarray) -> Trainer:
    """Model, fused AdamW (on CUDA), GradScaler (for float16) and torch.compile, as the notebook sets them up."""
    hw = detect_hardware(cfg.device, cfg.dtype)
    if hw.dtype != "float16":
        enable_tf32()
    torch.manual_seed(cfg.seed)
    model_config = GPTConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                             block_size=cfg.block_size, dropout=cfg.dropout, bias=cfg.bias)
    raw_model = GPT(model_config).to(hw.device)
    optimizer = raw_model.configure_optimizer(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                              fused=hw.device_type == "cuda")
    scaler = torch.amp.GradScaler(hw.device_type, enabled=hw.dtype == "float16")
    model = raw_model
    if cfg.compile:  # tried on a batch of its own, falling back to eager as the notebook does
        trial = sample_offsets(torch.Generator().manual_seed(0), len(tokens), cfg.block_size, cfg.batch_size)
        model = compile_model(raw_model, *get_batch(tokens, trial, cfg.block_size, hw.device), hw)
    return Trainer(cfg, hw, raw_model, model, optimizer, scaler)


def random_tokens(n: int = 1 << 20, seed: int = 0) -> np.ndarray:
    """n random GPT-2 token ids, uint16 like train.bin."""
    return np.random.default_rng(seed).integers(0, 50257, size=n, dtype=np.uint16)


def train_step(t: Trainer, tokens: np.ndarray, sampler: torch.Generator, step: int) -> torch.Tensor:
    """One optimizer step of the notebook's loop (one process); the loss stays on the device."""
    cfg = t.cfg
    lr = learning_rate(step, cfg.learning_rate, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    rows = step_offsets(sampler, len(tokens), cfg.block_size, cfg.batch_size, cfg.grad_accum_steps)
    step_loss = torch.zeros((), device=t.hw.device)
    for offsets in rows:
        x, y = get_batch(tokens, offsets, cfg.block_size, t.hw.device)
        with autocast(t.hw):
            _, loss = t.model(x, y)
        loss = loss / len(rows)
        t.scaler.scale(loss).backward()
        step_loss += loss.detach()
    t.scaler.unscale_(t.optimizer)
    torch.nn.utils.clip_grad_norm_(t.model.parameters(), cfg.grad_clip)
    t.scaler.step(t.optimizer)
    t.scaler.update()
    t.optimizer.zero_grad(set_to_none=True)
    return step_loss


def synchronize(hw: Hardware) -> None:
    """Wait for the GPU's queued work (a no-op on the CPU)."""
    if hw.device_type == "cuda":
        torch.cuda.synchronize(hw.device)


def bench_train(cfg: TrainConfig, steps: int, warmup: int, peak_flops: float | None = None) -> dict:
    """Tokens/s, MFU and peak GPU memory of `steps` training steps after `warmup` untimed ones."""
    if steps < 1 or warmup < 1:
        raise ValueError("steps and warmup must be at least 1")
    tokens, sampler = random_tokens(), torch.Generator().manual_seed(cfg.seed)
    t = make_trainer(cfg, tokens)
    if t.hw.device_type == "cuda":
        torch.cuda.reset_peak_memory_stats(t.hw.device)
    first = train_step(t, tokens, sampler, 0)
    for step in range(1, warmup):
        train_step(t, tokens, sampler, step)
    synchronize(t.hw)
    start = time.perf_counter()
    losses = [train_step(t, tokens, sampler, warmup + i) for i in range(steps)]
    synchronize(t.hw)  # the window's only sync: a .item() per step would stall the GPU's queue
    elapsed = time.perf_counter() - start
    tokens_per_s = steps * cfg.tokens_per_step / elapsed
    peak = peak_flops or t.hw.peak_flops
    return {
        "preset": cfg.preset,
        "device": t.hw.name,
        "dtype": t.hw.dtype,
        "compiled": t.model is not t.raw_model,
        "params": t.raw_model.num_params(),
        "tokens_per_step": cfg.tokens_per_step,
        "steps": steps,
        "warmup": warmup,
        "seconds": elapsed,
        "tokens_per_s": tokens_per_s,
        # nanoGPT's MFU: the model's FLOPs per second over the hardware's peak
        "mfu": t.raw_model.flops_per_token(cfg.block_size) * tokens_per_s / peak if peak else None,
        "peak_flops": peak,
        "peak_memory_gb": torch.cuda.max_memory_allocated(t.hw.device) / GB if t.hw.device_type == "cuda" else None,
        "first_loss": first.item(),
        "last_loss": losses[-1].item(),
    }


def train_report(r: dict) -> str:
    """A bench_train result as an aligned table."""
    mfu = f"{r['mfu']:.1%} of {r['peak_flops'] / 1e12:,.0f} TFLOP/s" if r["mfu"] is not None else \
        "n/a (no peak FLOP/s known for this device; pass --peak-flops)"
    memory = f"{r['peak_memory_gb']:.2f} GB (torch.cuda.max_memory_allocated)" if r["peak_memory_gb"] is not None else "n/a (CPU)"
    return table([
        ("preset", r["preset"]),
        ("device", f"{r['device']}, {r['dtype']}, {'compiled' if r['compiled'] else 'eager'}"),
        ("parameters", f"{r['params'] / 1e6:.2f}M"),
        ("tokens per step", f"{r['tokens_per_step']:,}"),
        ("timed steps", f"{r['steps']} after {r['warmup']} warm-up, {r['seconds']:.2f} s, "
                        f"{1000 * r['seconds'] / r['steps']:.1f} ms per step"),
        ("tokens/s", f"{r['tokens_per_s']:,.0f}"),
        ("MFU", mfu),
        ("peak GPU memory", memory),
        ("loss", f"{r['first_loss']:.3f} at the first step, {r['last_loss']:.3f} at the last "
                 f"(random tokens: it stays near ln 50257 = 10.8)"),
    ])


# --- checkpoint I/O on GPT-2 124M -------------------------------------------------------------


def verdict(value: float, limit: float) -> str:
    """PASS within the limit, OVER beyond it."""
    return "PASS" if value <= limit else "OVER"


def trained_full_checkpoint(config: GPTConfig) -> dict:
    """A model after one AdamW step, as the notebook's full checkpoint (tensors shared, not copied)."""
    torch.manual_seed(0)
    model = GPT(config)
    optimizer = model.configure_optimizer(0.1, 6e-4, (0.9, 0.95), fused=False)
    x = torch.randint(0, config.vocab_size, (1, min(64, config.block_size)))
    _, loss = model(x, x)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return make_checkpoint(FULL, step=1, model=model, loss=loss.item(), config=make_config("t4", env={}).to_dict(),
                           optimizer=optimizer, val_loss=None, best_val_loss=float("inf"), best_step=None,
                           scaler_state_dict={}, rng_state=capture_rng_state(),
                           sampler_state=torch.Generator().get_state(), history={"train": [[1, loss.item()]], "val": []})


def run_child(*args: str) -> dict:
    """Run `python -m helpers.bench ARGS` in a fresh interpreter; its last output line is JSON."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "helpers.bench", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"helpers.bench {args[0]} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss() -> int:
    """This process's peak resident memory so far, in bytes.

    VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec, so a
    child of a big process would report the parent's size.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: ru_maxrss is in bytes on macOS
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:"))


def child_strip(full_path: str, out_path: str) -> dict:
    """Time create_deployment_checkpoint and record peak RSS (run by checkpoint-io in a fresh process)."""
    before = peak_rss()
    start = time.perf_counter()
    create_deployment_checkpoint(full_path, out_path, force=True)
    return {"seconds": time.perf_counter() - start, "peak_rss": peak_rss(), "rss_before": before}


def child_load(path: str) -> dict:
    """Time load_model, then one read of every weight (run by checkpoint-io in a fresh process)."""
    start = time.perf_counter()
    model, _ = load_model(path)
    loaded = time.perf_counter()
    # load_model memory-maps: the weights are read from the page cache when first used
    with torch.no_grad():
        for p in model.parameters():
            p.sum()
    return {"seconds": loaded - start, "touch_seconds": time.perf_counter() - loaded}


def runs(times: list[float]) -> str:
    """'median (all runs)' for a list of seconds."""
    return f"{statistics.median(times):.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)})"


def bench_checkpoint_io(work_dir: Path, repeats: int = 3, config: GPTConfig | None = None) -> list[tuple[str, str]]:
    """Strip, load and save-stall figures (for GPT-2 124M unless told another config), as (name, text) rows."""
    ckpt = trained_full_checkpoint(config or GPTConfig())
    params = sum({tensor_identity(t): t.numel() for t in ckpt["model_state_dict"].values()}.values())  # tied: once
    full_path, deploy_path = work_dir / "model_step_1.pt", work_dir / "model_final.pt"

    # (3) What a periodic save costs the loop: a blocking save, or snapshot + hand-off to the writer.
    # Taken in turns, so that a change in the machine's load hits both alike.
    writer = BackgroundWriter()
    blocking, stalls, backgrounds = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        save_checkpoint(ckpt, full_path)
        blocking.append(time.perf_counter() - start)
        start = time.perf_counter()
        # what the notebook's loop pays: a copy (into the last copy's memory) handed to the writer
        writer.save(ckpt, lambda copy: save_periodic(work_dir, copy, keep_last=1), slot="periodic")
        stalls.append(time.perf_counter() - start)
        writer.wait()
        backgrounds.append(time.perf_counter() - start)
    stall = statistics.median(stalls) / statistics.median(blocking)
    del ckpt, writer
    gc.collect()

    # (1) Strip the full checkpoint to a deployment one, in a fresh process.
    strip = run_child("child-strip", str(full_path), str(deploy_path))
    # (2) Load it into a ready model; a first run warms the page cache, the second is measured.
    run_child("child-load", str(deploy_path))
    load = run_child("child-load", str(deploy_path))

    return [
        ("full checkpoint", f"{full_path.stat().st_size / GB:.2f} GB "
                            f"(model_step_1.pt: {params / 1e6:.1f}M parameters + AdamW state)"),
        ("deployment checkpoint", f"{deploy_path.stat().st_size / GB:.2f} GB (model_final.pt, float32)"),
        ("strip: time", f"{strip['seconds']:.2f} s (limit {STRIP_SECONDS} s) {verdict(strip['seconds'], STRIP_SECONDS)}"),
        ("strip: peak RSS", f"{strip['peak_rss'] / GB:.2f} GB (limit {STRIP_RSS_GB} GB) "
                            f"{verdict(strip['peak_rss'] / GB, STRIP_RSS_GB)}; "
                            f"{strip['rss_before'] / GB:.2f} GB of it is Python + torch before the strip"),
        ("load: time", f"{load['seconds']:.3f} s (limit {LOAD_SECONDS} s) {verdict(load['seconds'], LOAD_SECONDS)}; "
                       f"page cache warm, imports excluded"),
        ("load: first read", f"{load['touch_seconds']:.3f} s to read every weight once after loading "
                             f"(memory-mapped, so paid on first use)"),
        ("save: blocking", f"{runs(blocking)} for save_checkpoint (torch.save + fsync, atomic)"),
        ("save: loop stall", f"{runs(stalls)} for BackgroundWriter.save (snapshot + hand-off)"),
        ("stall / blocking", f"{stall:.0%} (limit {STALL_FRACTION:.0%}) {verdict(stall, STALL_FRACTION)}; median against median"),
        ("save: background", f"{runs(backgrounds)} until the background write was done"),
        ("machine", f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; files in {work_dir}"),
    ]


# --- the GPU machine check --------------------------------------------------------------------


@dataclass
class Case:
    """A training configuration to measure: a preset and the settings changed from it."""

    label: str
    preset: str
    overrides: dict
    min_capability: tuple[int, int] = (0, 0)  # CUDA compute capability the case is meant for


GPU_CASES = [
    Case("t4-like: float16 + GradScaler, eager, 8 x 1024", "t4", dict(dtype="float16", compile=False)),
    # Where the notebook picks the a100 preset: Ampere and newer (bf16).
    Case("a100: bf16 + torch.compile, 16 x 1024", "a100", {}, min_capability=(8, 0)),
]


def states_equal(a: object, b: object) -> bool:
    """Two (nested) states hold equal tensors and values."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    return a == b


def resume_check(cfg: TrainConfig, work_dir: Path, steps: int = 2) -> dict:
    """Train, save a full checkpoint the loop's way, resume it in a fresh model, and compare."""
    tokens = random_tokens()
    a, sampler_a = make_trainer(cfg, tokens), torch.Generator().manual_seed(cfg.seed)
    for step in range(steps):
        train_step(a, tokens, sampler_a, step)
    ckpt = snapshot(make_checkpoint(FULL, step=steps, model=a.raw_model, loss=0.0, config=cfg.to_dict(),
                                    optimizer=a.optimizer, scaler_state_dict=a.scaler.state_dict(),
                                    rng_state=capture_rng_state(), sampler_state=sampler_a.get_state(),
                                    history={"train": [], "val": []}))
    writer = BackgroundWriter()
    start = time.perf_counter()
    writer.save(ckpt, lambda copy: save_periodic(work_dir, copy, keep_last=1), slot="periodic")
    writer.wait()
    save_seconds = time.perf_counter() - start

    b = make_trainer(dataclasses.replace(cfg, seed=cfg.seed + 1), tokens)  # other initial weights
    path, loaded = find_resume_checkpoint(work_dir, "auto", b.raw_model.config, report=print)
    load_weights(b.raw_model, path, loaded)  # the notebook's Resume cell, step by step
    b.optimizer.load_state_dict(loaded["optimizer_state_dict"])
    b.scaler.load_state_dict(loaded["scaler_state_dict"])
    sampler_b = torch.Generator()
    sampler_b.set_state(loaded["sampler_state"])
    restore_rng_state(loaded["rng_state"])
    same_state = (states_equal(a.raw_model.state_dict(), b.raw_model.state_dict())
                  and states_equal(a.optimizer.state_dict(), b.optimizer.state_dict())
                  and states_equal(a.scaler.state_dict(), b.scaler.state_dict())
                  and torch.equal(sampler_a.get_state(), sampler_b.get_state()))
    loss_a = train_step(a, tokens, sampler_a, steps).item()
    loss_b = train_step(b, tokens, sampler_b, steps).item()
    drift = max((pa - pb).abs().max().item() for pa, pb in zip(a.raw_model.parameters(), b.raw_model.parameters()))
    return {"path": path, "size": path.stat().st_size, "save_seconds": save_seconds, "same_state": same_state,
            "loss_a": loss_a, "loss_b": loss_b, "same_loss": abs(loss_a - loss_b) <= 1e-5 * max(1.0, abs(loss_a)),
            "drift": drift, "device": a.hw.name, "dtype": a.hw.dtype}


def release_gpu_memory() -> None:
    """Free what a finished case left on the GPU, so the next case's peak is its own."""
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()  # compiled graphs hold on to their model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def gpu_check(cases: list[Case], resume_preset: str, steps: int, warmup: int, work_dir: Path) -> int:
    """Speed of each case and one save/resume cycle; 1 if anything failed, else 0."""
    failed = False
    capability = torch.cuda.get_device_capability() if torch.cuda.is_available() else None
    for case in cases:
        print(f"\n== {case.label}")
        if capability and capability < case.min_capability:
            print(f"skipped: meant for compute capability {case.min_capability}+, this GPU has {capability}")
            continue
        try:
            cfg = dataclasses.replace(make_config(case.preset, env={}), **case.overrides)
            print(train_report(bench_train(cfg, steps, warmup)))
        except Exception as e:  # e.g. out of memory on a small GPU: report it and go on
            failed = True
            print(f"FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        release_gpu_memory()
    print(f"\n== save and resume: preset {resume_preset}, eager, micro-batches of 2 rows (any GPU's memory)")
    try:
        cfg = dataclasses.replace(make_config(resume_preset, env={}), compile=False, batch_size=2, grad_accum_steps=2)
        r = resume_check(cfg, work_dir)
    except Exception as e:
        print(f"FAILED: {type(e).__name__}: {e}")
        return 1
    ok = r["same_state"] and r["same_loss"]
    print(table([
        ("device", f"{r['device']}, {r['dtype']}"),
        ("saved", f"{r['path'].name}, {r['size'] / GB:.2f} GB, {r['save_seconds']:.2f} s in the background writer"),
        ("resumed state", "equal (weights, AdamW, GradScaler, sampler)" if r["same_state"] else "DIFFERENT"),
        ("next step's loss", f"{r['loss_a']:.6f} trained on, {r['loss_b']:.6f} resumed: "
                             f"{'equal' if r['same_loss'] else 'DIFFERENT'}"),
        ("weights after it", f"max difference {r['drift']:.2e}"),
        ("result", "PASS" if ok else "FAIL"),
    ]))
    return 1 if failed or not ok else 0


# --- the outcome: the notebook itself, run to its end --------------------------------------------

NOTEBOOK_SCRIPT = REPO / "notebooks" / "train_gpt2_124m_colab.py"


def run_notebook(settings: dict[str, object], checkpoint_dir: Path) -> dict:
    """Run the notebook's .py with GPT2_* settings into checkpoint_dir; its run_summary.json, with wall time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPT2_") or k == "GPT2_DATA_URL"}
    env.update({f"GPT2_{name.upper()}": str(value) for name, value in settings.items()})
    env.update(GPT2_CHECKPOINT_DIR=str(checkpoint_dir), GPT2_RESUME="never", MPLBACKEND="Agg")
    started = time.time()
    proc = subprocess.run([sys.executable, str(NOTEBOOK_SCRIPT)], env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{NOTEBOOK_SCRIPT.name} exited {proc.returncode}: {last}")
    summary = json.loads((checkpoint_dir / "run_summary.json").read_text())
    return dict(summary, wall_seconds=time.time() - started)


def outcome_report(s: dict) -> str:
    """The outcome of one run as a table."""
    tokens_per_s = s["session_steps"] * s["tokens_per_step"] / s["session_seconds"]
    mfu = tokens_per_s * s["flops_per_token"] / s["peak_flops"] if s["peak_flops"] else None
    return table([
        ("preset", f"{s['preset']} on {s['device']}, {s['parameters'] / 1e6:.2f}M parameters"),
        ("trained", f"{s['steps']} steps, {s['epochs']:.2f} epochs"),
        ("wall time", f"{s['wall_seconds'] / 60:.1f} min in all, {s['session_seconds'] / 60:.1f} min in the loop"),
        ("speed", f"{tokens_per_s:,.0f} tokens/s" + (f", MFU {mfu:.1%}" if mfu is not None else "")),
        ("peak memory", f"{s['peak_memory_gb']:.1f} GB" if s["peak_memory_gb"] is not None else "n/a (CPU)"),
        ("best val loss", f"{s['best_val_loss']:.4f} at step {s['best_step']}"),
        ("final pair", f"step {s['final_step']}, model_final.pt val loss {s['final_val_loss']:.4f}"),
        ("stopped", s["stop_reason"]),
    ])


def parse_settings(pairs: list[str]) -> dict[str, str]:
    """FIELD=VALUE pairs as a dict (checked by the notebook's own settings)."""
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {pair!r}: expected FIELD=VALUE, e.g. max_steps=100")
        settings[name.strip().lower()] = value
    return settings


# --- command line -----------------------------------------------------------------------------


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The preset's settings (GPT2_* overrides from the environment apply), then the flags'."""
    cfg = make_config(args.preset or detect_preset())
    flags = {"device": args.device, "dtype": args.dtype, "compile": args.compile,
             "batch_size": args.batch_size, "grad_accum_steps": args.grad_accum_steps}
    return dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    """The command line: parse argv, run, and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m helpers.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="tokens/s, MFU and peak GPU memory of the notebook's training step")
    train.add_argument("--preset", choices=list(PRESETS), help="default: by hardware")
    train.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    train.add_argument("--warmup", type=int, default=3, help="untimed steps first, at least 1 (default 3)")
    train.add_argument("--device", help="override the preset: cpu, cuda, cuda:1")
    train.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="override the preset's precision")
    train.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="override the preset")
    train.add_argument("--batch-size", type=int, help="micro-batch rows (override the preset)")
    train.add_argument("--grad-accum-steps", type=int, help="micro-batches per step (override the preset)")
    train.add_argument("--peak-flops", type=float, help="peak FLOP/s for MFU where the device is not in PEAK_FLOPS")

    io = sub.add_parser("checkpoint-io", help="GPT-2 124M: strip a full checkpoint, load a deployment one, save stall")
    io.add_argument("--dir", type=Path, help="where to write the files (default: a temporary folder); removed after")
    io.add_argument("--repeats", type=int, default=3, help="saves of each kind timed; medians compared (default 3)")

    gpu = sub.add_parser("gpu-check", help="on a CUDA machine: t4-like and a100 speed, then a save/resume cycle")
    gpu.add_argument("--steps", type=int, default=10, help="timed steps per case (default 10)")
    gpu.add_argument("--warmup", type=int, default=3, help="untimed steps per case (default 3)")

    result = sub.add_parser("outcome", help="run the notebook to its end on a preset; epochs, time, best loss, why it stopped")
    result.add_argument("--preset", choices=list(PRESETS), help="default: by hardware")
    result.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="any notebook setting, e.g. --set train_fraction=0.05 (repeatable)")
    result.add_argument("--dir", type=Path, help="keep the run's checkpoints here (default: a temporary folder)")
    result.add_argument("--chart", type=Path, help="copy the run's loss chart (PNG) here")

    strip = sub.add_parser("child-strip", help="(used by checkpoint-io) time one strip in this process")
    strip.add_argument("full")
    strip.add_argument("out")
    load = sub.add_parser("child-load", help="(used by checkpoint-io) time one load in this process")
    load.add_argument("path")

    args = parser.parse_args(argv)
    for name in ("steps", "warmup", "repeats"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name} {getattr(args, name)}: must be at least 1")
    try:
        return run(args)
    except (ValueError, OSError, CheckpointError, RuntimeError) as e:  # bad settings, a bad --dir: one line, not a traceback
        return fail(e, getattr(args, "dir", None))


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; its exit status."""
    if args.command == "train":
        print(train_report(bench_train(train_config(args), args.steps, args.warmup, args.peak_flops)))
    elif args.command == "checkpoint-io":
        if args.dir:
            args.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-ckpt-", dir=args.dir) as tmp:
            print(table(bench_checkpoint_io(Path(tmp), args.repeats)))
    elif args.command == "gpu-check":
        if not torch.cuda.is_available():
            print("gpu-check needs a CUDA GPU; on a CPU try: python -m helpers.bench train --preset cpu")
            return 2
        with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
            return gpu_check(GPU_CASES, "a100", args.steps, args.warmup, Path(tmp))
    elif args.command == "outcome":
        settings = dict(parse_settings(args.set), preset=args.preset or detect_preset())
        with tempfile.TemporaryDirectory(prefix="bench-outcome-") as tmp:
            checkpoint_dir = args.dir or Path(tmp)
            summary = run_notebook(settings, checkpoint_dir)
            print(outcome_report(summary))
            if args.chart:
                args.chart.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(checkpoint_dir / "loss.png", args.chart)
    elif args.command == "child-strip":
        print(json.dumps(child_strip(args.full, args.out)))
    elif args.command == "child-load":
        print(json.dumps(child_load(args.path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
