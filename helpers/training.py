"""Training utilities: hardware and precision, learning rate, evaluation, random states, processes."""

from __future__ import annotations

import contextlib
import math
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from helpers.data import eval_offsets, get_batch

# Peak dense tensor-core throughput in FLOP/s by GPU, for MFU: fp16 on a T4 (it has no bf16),
# bf16 elsewhere. Substrings of torch.cuda.get_device_name().
PEAK_FLOPS = {
    "T4": 65e12,
    "V100": 125e12,
    "A10G": 125e12,
    "L4": 121e12,
    "A100": 312e12,
    "L40S": 362e12,
    "H100": 989e12,
    "H200": 989e12,
}


@dataclass
class Hardware:
    """Where and how training runs."""

    device: str  # "cpu", "cuda", "cuda:1"
    device_type: str  # "cpu" or "cuda"
    name: str  # e.g. "Tesla T4", "cpu"
    dtype: str  # "float32", "bfloat16" or "float16"
    peak_flops: float | None  # None where unknown (CPUs)


def detect_hardware(device: str = "auto", dtype: str = "auto") -> Hardware:
    """Pick device and precision: bf16 from compute capability 8.0 (Ampere) up, fp16 below, fp32 on CPU.

    Not torch.cuda.is_bf16_supported(): it answers True on a T4, which emulates bf16 slowly.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if device_type == "cuda":
        index = torch.device(device).index or 0
        name = torch.cuda.get_device_name(index)
        major, _ = torch.cuda.get_device_capability(index)
        best = "bfloat16" if major >= 8 else "float16"
        # longest names first, so that "L40S" is not taken for "L4"
        peak = next((PEAK_FLOPS[key] for key in sorted(PEAK_FLOPS, key=len, reverse=True) if key in name), None)
    else:
        name, best, peak = "cpu", "float32", None
    if dtype == "auto":
        dtype = best
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"GPT2_DTYPE={dtype!r}: expected auto, float32, bfloat16 or float16")
    return Hardware(device, device_type, name, dtype, peak)


def autocast(hw: Hardware) -> contextlib.AbstractContextManager:
    """Mixed-precision context for forward passes (a no-op in float32)."""
    if hw.dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=hw.device_type, dtype=getattr(torch, hw.dtype))


def enable_tf32() -> None:
    """Let float32 matrix multiplies use TF32 tensor cores (Ampere and newer)."""
    torch.set_float32_matmul_precision("high")


def learning_rate(step: int, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Linear warm-up to max_lr, then cosine decay to min_lr at max_steps."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


@torch.no_grad()
def estimate_loss(
    model: torch.nn.Module, tokens: np.ndarray, max_batches: int, batch_size: int, block_size: int, hw: Hardware
) -> float:
    """Mean loss per token over a split's consecutive windows (all, or the first max_batches batches).

    No random numbers are drawn: training's random state is untouched, and every evaluation
    reads the same text, so patience never fires on sampling noise.
    """
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), device=hw.device), 0
    for offsets in eval_offsets(len(tokens), block_size, batch_size, max_batches):
        x, y = get_batch(tokens, offsets, block_size, hw.device)
        with autocast(hw):
            _, loss = model(x, y)
        total += loss.float() * len(offsets)
        count += len(offsets)
    model.train(was_training)
    return (total / count).item()


def capture_rng_state() -> dict:
    """Python's, numpy's and torch's (CPU and CUDA) random states, as plain data and tensors."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Undo capture_rng_state(): put every random generator back as it was."""
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch_cpu"])
    if "torch_cuda" in state and torch.cuda.is_available():
        cuda_states = state["torch_cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Processes:
    """This process's place among those torchrun started (a single process without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """True for the process that writes checkpoints and shows progress."""
        return self.rank == 0


def init_processes(device: str = "auto") -> Processes:
    """Join the process group when started by torchrun: NCCL on GPUs, gloo on CPUs."""
    if "RANK" not in os.environ:
        return Processes()
    procs = Processes(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(procs.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return procs


def process_device(procs: Processes, device: str) -> str:
    """The device for this process: its own GPU under torchrun."""
    if device == "auto" and torch.cuda.is_available():
        return f"cuda:{procs.local_rank}" if procs.world_size > 1 else "cuda"
    return "cpu" if device == "auto" else device


def from_main_process(value: float, procs: Processes) -> float:
    """Process 0's value, on every process (the value itself in a single process)."""
    if procs.world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_processes(value: torch.Tensor, procs: Processes) -> torch.Tensor:
    """The mean of a tensor over all processes (the tensor itself in a single process)."""
    if procs.world_size == 1:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / procs.world_size


def compile_model(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, hw: Hardware) -> torch.nn.Module:
    """torch.compile(model), tried on one batch; the model itself if compiling fails.

    torch.compile compiles lazily, at the first forward pass, so a failure (no C compiler, an
    unsupported GPU) only shows there: this runs one forward and backward pass to find out, then
    clears the gradients it made.
    """
    cuda_devices = [torch.device(hw.device).index or 0] if hw.device_type == "cuda" else []
    try:
        # random state forked: dropout in the trial must not shift a resumed run's random numbers
        with torch.random.fork_rng(devices=cuda_devices):
            compiled = torch.compile(model)
            with autocast(hw):
                _, loss = compiled(x, y)
            loss.backward()
    except Exception as e:  # any failure to compile means: train uncompiled
        print(f"torch.compile failed, training uncompiled: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        compiled = model
    model.zero_grad(set_to_none=True)
    return compiled
