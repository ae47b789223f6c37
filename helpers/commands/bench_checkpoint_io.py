"""`python -m helpers.bench checkpoint-io`: GPT-2 124M's checkpoints stripped, loaded and saved, with their limits.

Each figure is printed beside its limit with PASS or OVER. The strip and the load run in fresh
processes (this module's child-strip and child-load), so that their memory and time are theirs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from helpers.checkpoints.checkpointer import Checkpointer
from helpers.checkpoints.deployment import create_deployment_checkpoint
from helpers.checkpoints.format import tensor_identity
from helpers.checkpoints.storage import load_model, save_checkpoint
from helpers.config import make_config
from helpers.model import GPT, GPTConfig
from helpers.training.run_state import RunState

REPO = Path(__file__).resolve().parents[2]
GB = 1e9
# The limits of issue 7 for GPT-2 124M's checkpoints.
STRIP_SECONDS, STRIP_RSS_GB, LOAD_SECONDS, STALL_FRACTION = 1.5, 0.8, 0.2, 0.25


def verdict(value: float, limit: float) -> str:
    """PASS within the limit, OVER beyond it."""
    return "PASS" if value <= limit else "OVER"


def trained_checkpointer(config: GPTConfig, work_dir: Path) -> Checkpointer:
    """A model after one AdamW step, registered with a Checkpointer on work_dir as the notebook registers its pieces."""
    torch.manual_seed(0)
    model = GPT(config)
    optimizer = model.configure_optimizer(0.1, 6e-4, (0.9, 0.95), fused=False)
    x = torch.randint(0, config.vocab_size, (1, min(64, config.block_size)))
    _, loss = model(x, x)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    run = RunState(step=1, loss=loss.item(), history={"train": [[1, loss.item()]], "val": []})
    scaler, sampler = torch.amp.GradScaler("cpu", enabled=False), torch.Generator()
    pieces = dict(
        model_state_dict=model, optimizer_state_dict=optimizer, scaler_state_dict=scaler, sampler_state=sampler
    )
    cfg = make_config("t4", env={"GPT2_KEEP_LAST": "1", "GPT2_ASYNC_SAVE": "true"})
    with contextlib.redirect_stdout(io.StringIO()):  # "starting from scratch": not a figure
        return Checkpointer(work_dir, cfg, {}, pieces, run, main=True)


def run_child(*args: str) -> dict:
    """Run this module with ARGS in a fresh interpreter; its last output line is JSON."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(
        [sys.executable, "-m", __spec__.name, *args], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{__spec__.name} {args[0]} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
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
    files = trained_checkpointer(config or GPTConfig(), work_dir)
    ckpt = files.state.state_dict()
    params = sum({tensor_identity(t): t.numel() for t in ckpt["model_state_dict"].values()}.values())  # tied: once
    full_path, deploy_path = work_dir / "model_step_1.pt", work_dir / "model_final.pt"

    # (3) What a periodic save costs the loop: a blocking save, or the notebook's files.save() (a copy
    # into the last copy's memory, handed to the writer). Taken in turns, so that a change in the
    # machine's load hits both alike.
    blocking, stalls, backgrounds = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        save_checkpoint(ckpt, full_path)
        blocking.append(time.perf_counter() - start)
        start = time.perf_counter()
        files.save()
        stalls.append(time.perf_counter() - start)
        files.writer.wait()
        backgrounds.append(time.perf_counter() - start)
    stall = statistics.median(stalls) / statistics.median(blocking)
    files.close()
    del ckpt, files
    gc.collect()

    # (1) Strip the full checkpoint to a deployment one, in a fresh process.
    strip = run_child("child-strip", str(full_path), str(deploy_path))
    # (2) Load it into a ready model; a first run warms the page cache, the second is measured.
    run_child("child-load", str(deploy_path))
    load = run_child("child-load", str(deploy_path))

    return [
        (
            "full checkpoint",
            f"{full_path.stat().st_size / GB:.2f} GB (model_step_1.pt: {params / 1e6:.1f}M parameters + AdamW state)",
        ),
        ("deployment checkpoint", f"{deploy_path.stat().st_size / GB:.2f} GB (model_final.pt, float32)"),
        (
            "strip: time",
            f"{strip['seconds']:.2f} s (limit {STRIP_SECONDS} s) {verdict(strip['seconds'], STRIP_SECONDS)}",
        ),
        (
            "strip: peak RSS",
            f"{strip['peak_rss'] / GB:.2f} GB (limit {STRIP_RSS_GB} GB) "
            f"{verdict(strip['peak_rss'] / GB, STRIP_RSS_GB)}; "
            f"{strip['rss_before'] / GB:.2f} GB of it is Python + torch before the strip",
        ),
        (
            "load: time",
            f"{load['seconds']:.3f} s (limit {LOAD_SECONDS} s) {verdict(load['seconds'], LOAD_SECONDS)}; "
            f"page cache warm, imports excluded",
        ),
        (
            "load: first read",
            f"{load['touch_seconds']:.3f} s to read every weight once after loading "
            f"(memory-mapped, so paid on first use)",
        ),
        ("save: blocking", f"{runs(blocking)} for save_checkpoint (torch.save + fsync, atomic)"),
        ("save: loop stall", f"{runs(stalls)} for Checkpointer.save (snapshot + hand-off)"),
        (
            "stall / blocking",
            f"{stall:.0%} (limit {STALL_FRACTION:.0%}) {verdict(stall, STALL_FRACTION)}; median against median",
        ),
        ("save: background", f"{runs(backgrounds)} until the background write was done"),
        ("machine", f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; files in {work_dir}"),
    ]


def main(argv: list[str] | None = None) -> int:
    """The children of bench_checkpoint_io: time one strip or one load in this process, print JSON."""
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    strip = sub.add_parser("child-strip", help="time one strip")
    strip.add_argument("full")
    strip.add_argument("out")
    load = sub.add_parser("child-load", help="time one load")
    load.add_argument("path")
    args = parser.parse_args(argv)
    print(json.dumps(child_strip(args.full, args.out) if args.command == "child-strip" else child_load(args.path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
