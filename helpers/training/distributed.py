"""Several processes under torchrun: joining the group, and agreeing on values."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
