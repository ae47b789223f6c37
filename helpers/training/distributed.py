"""Several processes under torchrun: joining the group, agreeing on values, and who speaks.

Process 0 speaks for all (print0) and alone writes files; once the final checkpoint is written
the others leave (leave_unless_main), so what the notebook does after training runs once.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from helpers.errors import SettingError


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

    def share(self, items: Sequence) -> Sequence:
        """This process's share of items: every world_size-th, from its rank."""
        return items[self.rank :: self.world_size]

    @property
    def gpu(self) -> int | None:
        """This process's own GPU under torchrun (its local rank); None for a single process, which takes the first."""
        return self.local_rank if self.world_size > 1 else None


def init_processes(device: str = "auto", grad_accum_steps: int = 1) -> Processes:
    """Join the process group when started by torchrun: NCCL on GPUs, gloo on CPUs.

    Each process runs its share of a step's grad_accum_steps micro-batches, so they must divide evenly.
    """
    if "RANK" not in os.environ:
        return Processes()
    procs = Processes(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    if grad_accum_steps % procs.world_size:
        raise SettingError(
            f"GPT2_GRAD_ACCUM_STEPS={grad_accum_steps}: must be a multiple of the {procs.world_size} processes"
        )
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(procs.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return procs


def print0(*args: object, **kwargs: object) -> None:
    """print, in process 0 only (every process before torchrun's group is joined: RANK says which it is)."""
    if os.environ.get("RANK", "0") == "0":
        print(*args, **kwargs)


@contextlib.contextmanager
def main_process_first(procs: Processes) -> Iterator[None]:
    """Process 0 runs the block first; the others wait for it, then run it (and find what it made)."""
    if procs.world_size > 1 and not procs.is_main:
        dist.barrier()
    yield
    if procs.world_size > 1 and procs.is_main:
        dist.barrier()


def leave_unless_main(procs: Processes) -> Processes:
    """After training: every process waits until process 0 has written the final checkpoint, then all but it exit.

    What is left is one process, which the returned Processes says.
    """
    if procs.world_size == 1:
        return procs
    dist.barrier()
    dist.destroy_process_group()
    if not procs.is_main:
        sys.exit(0)
    return Processes()


def sum_over_processes(value: torch.Tensor, procs: Processes) -> torch.Tensor:
    """The sum of a tensor over all processes (the tensor itself in a single process)."""
    if procs.world_size == 1:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def mean_over_processes(value: torch.Tensor, procs: Processes) -> torch.Tensor:
    """The mean of a tensor over all processes (the tensor itself in a single process)."""
    return sum_over_processes(value, procs) / procs.world_size if procs.world_size > 1 else value
