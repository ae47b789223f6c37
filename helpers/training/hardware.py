"""The machine training runs on: device, precision, peak speed, deterministic kernels, torch.compile with a fallback."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from helpers.errors import SettingError, describe

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


def gpu_capability(index: int = 0) -> tuple[int, int] | None:
    """The CUDA compute capability of GPU index, or None without a GPU."""
    return torch.cuda.get_device_capability(index) if torch.cuda.is_available() else None


def is_ampere_or_newer(capability: tuple[int, int]) -> bool:
    """Compute capability 8.0 and up: bf16 and TF32 tensor cores, worth torch.compile.

    Not torch.cuda.is_bf16_supported(): it answers True on a T4 (7.5), which emulates bf16 slowly.
    """
    return capability >= (8, 0)


def detect_hardware(device: str = "auto", dtype: str = "auto", local_rank: int | None = None) -> Hardware:
    """Pick device and precision: bf16 on Ampere and newer, fp16 on older GPUs, fp32 on the CPU.

    device "auto" is the GPU if there is one (under torchrun, the process's own: local_rank).
    """
    if device == "auto":
        device = "cpu" if not torch.cuda.is_available() else "cuda" if local_rank is None else f"cuda:{local_rank}"
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if device_type == "cuda":
        index = torch.device(device).index or 0
        if not torch.cuda.is_available():
            raise SettingError(
                f"GPT2_DEVICE={device!r}: this machine has no CUDA GPU (or torch was built without "
                "CUDA); use auto or cpu"
            )
        if torch.device(device).index is not None and index >= torch.cuda.device_count():
            raise SettingError(
                f"GPT2_DEVICE={device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0"
            )
        name = torch.cuda.get_device_name(index)
        best = "bfloat16" if is_ampere_or_newer(gpu_capability(index)) else "float16"
        # longest names first, so that "L40S" is not taken for "L4"
        peak = next((PEAK_FLOPS[key] for key in sorted(PEAK_FLOPS, key=len, reverse=True) if key in name), None)
    else:
        name, best, peak = "cpu", "float32", None
    if dtype == "auto":
        dtype = best
    if dtype not in ("float32", "bfloat16", "float16"):
        raise SettingError(f"GPT2_DTYPE={dtype!r}: expected auto, float32, bfloat16 or float16")
    return Hardware(device, device_type, name, dtype, peak)


def autocast(hw: Hardware) -> contextlib.AbstractContextManager:
    """Mixed-precision context for forward passes (a no-op in float32)."""
    if hw.dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=hw.device_type, dtype=getattr(torch, hw.dtype))


def enable_tf32() -> None:
    """Let float32 matrix multiplies use TF32 tensor cores (Ampere and newer)."""
    torch.set_float32_matmul_precision("high")


def make_deterministic() -> int:
    """Make training repeat itself bit for bit, on the CPU and on CUDA; the CPU thread count it fixed.

    A resume restores the state exactly anyway; what this adds is kernels that, given that state,
    compute the same bits every time (docs/checkpoints.md, "What is exact where"). Call it before
    the first CUDA matrix multiply: cuBLAS reads its workspace setting when torch makes its handle.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # a fixed cuBLAS workspace, no split-dependent sums
    # Strict: an operation without a deterministic kernel stops with an error instead of running
    # a nondeterministic one. It also makes scaled-dot-product attention's fused kernels run their
    # backward deterministically (flash without atomic adds, memory-efficient without key splits)
    # and rules out cuDNN's; the math kernel would need the attention matrices of every layer kept
    # for the backward (about 12 GB more on the t4 preset: more than a T4 has to spare).
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False  # its search may pick another algorithm in another run
    torch.backends.cuda.enable_cudnn_sdp(False)  # cuDNN attention's backward is not deterministic
    # CPU results depend on the thread count (sums are split by thread), so fix it: torch's own
    # choice, set explicitly, which also turns off MKL's dynamic mode, in which MKL may run a
    # matrix multiply on fewer threads when the machine is busy.
    threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    return threads


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
        print(f"torch.compile failed, training uncompiled: {describe(e)}")
        compiled = model
    model.zero_grad(set_to_none=True)
    return compiled
