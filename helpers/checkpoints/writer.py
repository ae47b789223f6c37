"""Writing checkpoints in the background, so that the training loop does not wait for the disk.

The loop pays for one copy of the tensors (a snapshot), into the memory of the previous copy
where it can; a thread writes the copy while training goes on.
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable

import torch

from helpers.checkpoints.safetensors_io import tensor_identity


def snapshot(obj: object, into: object = None, _state: dict | None = None) -> object:
    """A deep copy of a checkpoint dict with every tensor copied to the CPU.

    Training goes on changing the model and optimizer in place while the copy is written.
    Tensors that shared memory (the tied embedding and output head) share their copy too, so the
    file stores them once. `into`, an earlier snapshot of the same structure, lends its tensors
    as the destinations: copying into memory already touched is several times faster than into
    fresh memory (1.5 GB: 0.1 s against 0.6 s here).
    """
    state = {"copies": {}, "used": set()} if _state is None else _state
    if isinstance(obj, torch.Tensor):
        key = tensor_identity(obj)
        if key not in state["copies"]:
            reusable = (
                isinstance(into, torch.Tensor)
                and id(into) not in state["used"]
                and into.device.type == "cpu"
                and into.shape == obj.shape
                and into.dtype == obj.dtype
            )
            if reusable:
                state["used"].add(id(into))
                state["copies"][key] = into.copy_(obj.detach())
            else:
                state["copies"][key] = obj.detach().to("cpu", copy=True)
        return state["copies"][key]
    if isinstance(obj, dict):
        into = into if isinstance(into, dict) else {}
        return {k: snapshot(v, into.get(k), state) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        into = into if isinstance(into, (list, tuple)) and len(into) == len(obj) else [None] * len(obj)
        return type(obj)(snapshot(v, i, state) for v, i in zip(obj, into))
    return obj


# Every writer of this process, so that a new run in the same kernel can wait for an old one's
# last write (finish_writes) before it sweeps up temporary files.
_writers: weakref.WeakSet[BackgroundWriter] = weakref.WeakSet()


class BackgroundWriter:
    """Writes checkpoints on a thread, one at a time, so the training loop does not wait for disk.

    `save(ckpt, write, slot)` costs the loop one copy of the tensors (the snapshot that is then
    written); the copy's memory is kept per slot ("periodic", "best") and reused next time.
    With background=False it writes at once, in the caller's thread, with no copy at all.
    """

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._buffers: dict[str, object] = {}
        _writers.add(self)

    def save(self, ckpt: dict, write: Callable[[dict], object], slot: str) -> None:
        """write(a copy of ckpt) in the background, once the previous write has finished."""
        self.wait()  # also frees the slot's buffers: nothing is reading them any more
        if not self.background:
            write(ckpt)
            return
        copy = snapshot(ckpt, into=self._buffers.get(slot))
        self._buffers[slot] = copy

        def run() -> None:
            try:
                write(copy)
            except BaseException as e:  # re-raised in the training loop by wait()
                self._error = e

        self._thread = threading.Thread(target=run, name="checkpoint-writer", daemon=False)
        self._thread.start()

    def wait(self) -> None:
        """Block until the current write is done; re-raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        """Wait for the last write, then free the copies' memory (2 GB for GPT-2 124M)."""
        self._buffers.clear()  # the running write holds its own reference until it is done
        self.wait()


def finish_writes() -> None:
    """Wait for every writer of this process (an interrupted run's last write, in a notebook) and free its copies."""
    for writer in list(_writers):
        writer.close()  # a write that failed raises here, as it would have in its own run
