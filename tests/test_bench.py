"""helpers.bench runs and prints its figures; what it measures is checked here without timing.

Smoke tests only: no timing thresholds, which a shared CI machine cannot hold.
"""

import contextlib
import re
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TINY, tiny_model
from helpers.checkpoints.format import DEPLOYMENT, make_checkpoint
from helpers.checkpoints.storage import load_checkpoint, save_checkpoint
from helpers.commands import bench
from helpers.commands.bench import gpu_check, main
from helpers.commands.bench_checkpoint_io import bench_checkpoint_io
from helpers.model import GPT


@pytest.mark.slow
def test_train_bench_times_the_notebooks_own_loop(capsys):
    assert main(["train", "--preset", "ci", "--steps", "3", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "3 after 1 warm-up" in out and "ms per step" in out
    assert float(out.split("tokens/s")[1].split()[0].replace(",", "")) > 0
    assert "n/a (CPU)" in out and "float32, eager" in out


def test_bad_settings_fail_before_anything_runs(capsys):
    assert main(["train", "--preset", "ci", "--set", "max_step=5"]) == 1
    assert "GPT2_MAX_STEP: unknown setting" in capsys.readouterr().err
    assert main(["outcome", "--preset", "ci", "--set", "oops"]) == 1
    assert "expected FIELD=VALUE" in capsys.readouterr().err


@contextlib.contextmanager
def busy_processes(n: int):
    """n processes spinning on the CPU while the block runs: the load that once moved a resumed run's sums.

    At the lowest priority: they take every idle moment and preempt the run's threads now and then,
    without doubling the test's time as equal-priority spinners on 2 cores would.
    """
    spin = "import os; os.nice(19)\nwhile True: pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_gpu_check_logic_runs_on_the_cpu(tmp_path, capsys, monkeypatch):
    """gpu-check's speed case and its stop/resume cycle, through the notebook on the ci preset.

    The cycle runs as gpu-check runs it, with deterministic on: on two threads beside two busy
    processes, the resumed run's losses and final weights equal the uninterrupted run's bit for bit.
    """
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    cases = [("ci, eager", dict(preset="ci", compile=False), (0, 0))]
    resume = dict(preset="ci", max_steps=6, eval_every=2, save_every=3, patience=0, sample_tokens=1, deterministic=True)
    with busy_processes(2):
        status = gpu_check(cases, resume, steps=1, warmup=1, work_dir=tmp_path)
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.count("tokens/s") == 1
    assert "from the half-way checkpoint" in out and "PASS" in out
    assert "deterministic: on (2 CPU threads)" in out
    assert re.search(r"per-step losses +6 steps, largest difference 0.00e\+00 \(limit 0\)", out), out
    assert re.search(r"final weights +largest difference 0.00e\+00 \(limit 0\)", out), out


def test_gpu_check_prints_what_deterministic_costs(tmp_path, capsys, monkeypatch):
    """A deterministic case beside the same case without it: gpu-check prints the share of tokens/s it costs."""
    speed = {False: 1000.0, True: 960.0}
    monkeypatch.setattr(bench, "bench_train", lambda s, *_: {"tokens_per_s": speed[s.get("deterministic", False)]})
    monkeypatch.setattr(bench, "train_report", lambda r: "")
    monkeypatch.setattr(
        bench,
        "resume_check",
        lambda *_: dict(
            kernels="", resumed_at=True, steps=6, loss_gap=0, drift=0, limit=0, ok=True, device="cpu", dtype="float32"
        ),
    )
    cases = [("plain", dict(preset="ci"), (0, 0)), ("det", dict(preset="ci", deterministic=True), (0, 0))]
    bench.gpu_check(cases, {}, steps=1, warmup=1, work_dir=tmp_path)
    assert "deterministic costs 4.0% of the tokens/s (1,000 -> 960)" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for machines without a GPU")
def test_gpu_check_needs_a_gpu(capsys):
    assert main(["gpu-check"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().out


@pytest.mark.slow
def test_checkpoint_io_measures_every_figure(tmp_path):
    """The checkpoint-io bench end to end (fresh processes included), on a tiny model."""
    rows = dict(bench_checkpoint_io(tmp_path, repeats=1, config=TINY))
    for name in ("strip: time", "strip: peak RSS", "load: time", "stall / blocking"):
        assert float(rows[name].split()[0].rstrip("%")) > 0, rows[name]  # a measured number, then its verdict
    full = load_checkpoint(tmp_path / "model_step_1.pt")
    stripped = load_checkpoint(tmp_path / "model_final.pt")  # what the timed strip wrote
    assert "optimizer_state_dict" in full and "optimizer_state_dict" not in stripped
    assert all(torch.equal(stripped["model_state_dict"][k], v) for k, v in full["model_state_dict"].items())


@pytest.mark.slow
def test_load_model_does_not_initialise_the_model(tmp_path):
    """Initialising on the meta device imports torch._dynamo: seconds in a fresh process, for nothing."""
    path = save_checkpoint(make_checkpoint(DEPLOYMENT, step=0, model=GPT(TINY), loss=0.0, config={}), tmp_path / "m.pt")
    code = (
        "import sys; from helpers.checkpoints.storage import load_model; load_model(sys.argv[1]); "
        "print('torch._dynamo' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO, check=True)
    assert proc.stdout.strip() == "False"


def test_generate_bench_compares_with_transformers_on_the_same_weights():
    """bench generate's rows on the tiny model: both models ran, agreed greedily, and were measured."""
    from helpers.commands.bench_generate import bench_generate, generate_report

    rows = bench_generate(tiny_model(0), [4, 9], prompt_tokens=3, repeats=1)
    assert [(r["model"], r["tokens"]) for r in rows] == [
        (m, n) for n in (4, 9) for m in ("this project", "transformers")
    ]
    assert all(r["agree"].startswith("same") and r["tokens_per_s"] > 0 and 0 < r["first"] <= r["seconds"] for r in rows)
    report = generate_report(rows, "title")
    assert report.count("speed-up") == 2 and report.splitlines()[0] == "title"


def test_generate_bench_prices_the_sampling_controls():
    """bench generate's second table on the tiny model: each of CONTROLS timed per length and for the draw alone."""
    from helpers.commands.bench_generate import CONTROLS, bench_controls, controls_report

    rows = bench_controls(tiny_model(0), [4], prompt_tokens=3, repeats=1, draws=3)
    assert [(r["tokens"], r["controls"]) for r in rows] == [(n, c) for n in (4, None) for c in CONTROLS]
    assert all(r["seconds"] > 0 for r in rows)
    lines = controls_report(rows, "title").splitlines()
    assert lines[0] == "title" and len(lines) == 2 + len(rows) and all(line.endswith("x") for line in lines[2:])


def test_generate_bench_bad_input_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    assert main(["generate", "--checkpoint", str(missing), "--tokens", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0]
    with pytest.raises(SystemExit):
        main(["generate", "--tokens", "0"])
    assert "at least 1" in capsys.readouterr().err


def test_space_bench_bad_input_is_one_line(tmp_path, capsys):
    """bench space refuses a --compare folder that is not a static Space's before building anything."""
    missing = tmp_path / "old-space"
    assert main(["space", "--compare", str(missing)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0] and "not a static Space's folder" in err[0]
    with pytest.raises(SystemExit):
        main(["space", "--threads", "0"])
    assert "at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_prepare_bench_measures_both_ways_on_the_same_text(capsys):
    """bench prepare on half a megabyte: both ways in fresh processes, the same token files, each figure a number."""
    assert main(["prepare", "--mb", "0.5"]) == 0
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert "the same token files both ways" in rows["corpus"]
    for way in ("this project", "nanoGPT prepare.py"):
        for figure in ("time", "peak memory"):
            assert float(rows[f"{way}: {figure}"].split()[0].replace(",", "")) > 0, rows
