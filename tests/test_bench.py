"""helpers.bench runs and prints its figures; what it measures is checked here without timing.

Smoke tests only: no timing thresholds, which a shared CI machine cannot hold.
"""

import subprocess
import sys

import pytest
import torch

from conftest import REPO
from helpers.bench import Case, bench_checkpoint_io, gpu_check, main
from helpers.checkpoint import DEPLOYMENT, make_checkpoint, save_checkpoint
from helpers.model import GPT, GPTConfig

TINY = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32)


def test_train_bench_prints_tokens_per_second(capsys):
    assert main(["train", "--preset", "ci", "--steps", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "tokens/s" in out and "n/a (no peak FLOP/s" in out
    assert main(["train", "--preset", "ci", "--steps", "1", "--warmup", "1", "--peak-flops", "1e12"]) == 0
    assert "% of 1 TFLOP/s" in capsys.readouterr().out


def test_gpu_check_logic_runs_on_the_cpu(tmp_path, capsys):
    """gpu-check's cases and its save/resume cycle, on the ci preset instead of t4 and a100."""
    cases = [Case("ci, eager", "ci", dict(compile=False)), Case("ci, float16 GradScaler", "ci", dict(dtype="float16"))]
    status = gpu_check(cases, "ci", steps=1, warmup=1, work_dir=tmp_path)
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.count("tokens/s") == 2
    assert "equal (weights, AdamW, GradScaler, sampler)" in out and "PASS" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for machines without a GPU")
def test_gpu_check_needs_a_gpu(capsys):
    assert main(["gpu-check"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().out


def test_checkpoint_io_measures_every_figure(tmp_path):
    """The checkpoint-io bench end to end (fresh processes included), on a tiny model."""
    rows = dict(bench_checkpoint_io(tmp_path, repeats=1, config=TINY))
    for name in ("strip: time", "strip: peak RSS", "load: time", "stall / blocking"):
        assert "PASS" in rows[name] or "OVER" in rows[name], rows[name]
    assert (tmp_path / "model_final.pt").exists()


def test_load_model_does_not_initialise_the_model(tmp_path):
    """Initialising on the meta device imports torch._dynamo: seconds in a fresh process, for nothing."""
    path = save_checkpoint(make_checkpoint(DEPLOYMENT, step=0, model=GPT(TINY), loss=0.0, config={}), tmp_path / "m.pt")
    code = "import sys; from helpers.checkpoint import load_model; load_model(sys.argv[1]); print('torch._dynamo' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO, check=True)
    assert proc.stdout.strip() == "False"
