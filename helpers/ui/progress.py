"""The training loop's progress: a bar with speed and MFU, the log lines, and what the session measured.

Only process 0 shows anything. Speed is measured per log window (the steps between two logged
losses); the first window pays for warm-up and compilation, so the estimate of the time left is
made from the second.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from helpers.config import TrainConfig
from helpers.model import GPT
from helpers.training.distributed import Processes
from helpers.training.hardware import Hardware
from helpers.training.run_state import RunState
from helpers.ui.playground import sample_line
from helpers.ui.tensorboard import TensorBoardLog


class TrainingProgress:
    """The progress bar and log lines of one session's training loop, and its speed windows."""

    def __init__(
        self,
        cfg: TrainConfig,
        run: RunState,
        steps_per_epoch: float,
        model: GPT,
        hw: Hardware,
        procs: Processes,
        board: TensorBoardLog | None = None,
    ) -> None:
        self.cfg, self.steps_per_epoch, self.model, self.hw, self.procs = cfg, steps_per_epoch, model, hw, procs
        self.board = board or TensorBoardLog("", run.step, enabled=False)  # the same figures for TensorBoard
        self.flops_per_step = model.flops_per_token(cfg.block_size) * cfg.tokens_per_step
        self.show = procs.is_main
        self.bar = tqdm(
            total=cfg.max_steps, initial=run.step, disable=not self.show or run.stop_reason is not None, unit="step"
        )
        self.started = time.time()
        self.logged_step, self.logged_at = run.step, time.time()
        self.speed_windows: list[list[float]] = []  # [steps, seconds] of each log window

    def write(self, line: str) -> None:
        """A line above the bar, from process 0."""
        if self.show:
            self.bar.write(line)

    def epoch(self, step: int) -> str:
        """A step as epochs, for the log: 0.25."""
        return f"{step / self.steps_per_epoch:.2f}"

    def logged(self, run: RunState, lr: float) -> None:
        """A training loss was logged: the bar's loss, speed and MFU; after the second window, the time left."""
        steps, elapsed = run.step - self.logged_step, time.time() - self.logged_at
        self.logged_step, self.logged_at = run.step, time.time()
        self.speed_windows.append([steps, elapsed])
        peak = self.hw.peak_flops * self.procs.world_size if self.hw.peak_flops else None
        mfu = self.flops_per_step * steps / elapsed / peak if peak else None
        tokens_per_s = steps * self.cfg.tokens_per_step / elapsed
        self.board.train(run.step, run.loss, lr, tokens_per_s)
        self.bar.set_postfix(
            epoch=self.epoch(run.step),
            loss=f"{run.loss:.4f}",
            lr=f"{lr:.2e}",
            tok_s=f"{tokens_per_s:,.0f}",
            mfu=f"{mfu:.1%}" if mfu is not None else "n/a",
            refresh=False,
        )
        self.bar.update(steps)
        left = self.cfg.max_steps - run.step
        if len(self.speed_windows) == 2 and left > 0:  # the first window paid for warm-up
            self.write(
                f"measured {elapsed / steps:.2f} s per step: at most {left * elapsed / steps / 60:.0f} min "
                f"for the remaining {left} steps"
            )

    def untrained(self, run: RunState) -> None:
        """The untrained model's validation loss (step 0), where the curves start."""
        self.write(f"step 0: val loss {run.val_loss:.4f}")
        self.board.val(0, run.val_loss)

    def evaluated(self, run: RunState) -> None:
        """An evaluation's line; at a new best a line of the model's text, kept in run.samples."""
        self.write(
            f"step {run.step} (epoch {self.epoch(run.step)}): val loss {run.val_loss:.4f} "
            f"(best {run.best_val_loss:.4f} at step {run.best_step})"
        )
        if self.show and run.best_step == run.step and self.cfg.best_sample_tokens:
            text = sample_line(self.model, self.cfg.best_sample_tokens, self.hw, self.cfg.seed)
            self.write(f"  sample: {text}")
            run.samples.append([run.step, run.val_loss, text])
            self.board.sample(run.step, text)
        self.board.val(run.step, run.val_loss)

    def close(self, run: RunState) -> None:
        """The bar at the last step, closed."""
        self.bar.update(run.step - self.logged_step)
        self.bar.close()
        self.board.close()

    def ended(self, run: RunState, final_ckpt: dict, compiled: bool, session_steps: int) -> dict:
        """Say how training ended and which step the final pair is; what the run did: run_summary.json's contents."""
        print(f"training ended: {run.stop_reason}")
        print(
            f"the final pair is step {final_ckpt['step']} (epoch {self.epoch(final_ckpt['step'])}), "
            f"validation loss {final_ckpt.get('val_loss', float('nan')):.4f}"
        )
        return self.summary(run, final_ckpt, compiled, session_steps)

    def summary(self, run: RunState, final_ckpt: dict, compiled: bool, session_steps: int) -> dict:
        """What the run did and this session measured: run_summary.json (read by python -m helpers.bench)."""
        last_step = max([run.step] + [s for s, _ in run.history["train"]])  # a finished run resumes at its best step
        return {
            "preset": self.cfg.preset,
            "data_url": self.cfg.data_url,
            "steps": last_step,
            "epochs": last_step / self.steps_per_epoch,
            "tokens_per_step": self.cfg.tokens_per_step,
            "stop_reason": run.stop_reason,
            "best_step": run.best_step,
            "best_val_loss": run.best_val_loss,
            "final_step": final_ckpt["step"],
            "final_val_loss": final_ckpt.get("val_loss"),
            "session_steps": session_steps,
            "session_seconds": time.time() - self.started,
            "speed_windows": self.speed_windows,
            "device": self.hw.name,
            "dtype": self.hw.dtype,
            "compiled": compiled,
            "parameters": self.model.num_params(),
            "flops_per_token": self.model.flops_per_token(self.cfg.block_size),
            "peak_flops": self.hw.peak_flops,
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if self.hw.device_type == "cuda" else None,
        }
