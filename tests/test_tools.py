"""The two command-line tools of docs/checkpoints.md."""

import subprocess
import sys

import pytest
import torch

from conftest import save_full
from helpers.checkpoints.storage import save_checkpoint
from helpers.commands.create_deployment_checkpoint import main as create_main
from helpers.commands.test_deployment_checkpoint import main as verify_main

TOOLS = {"helpers.create_deployment_checkpoint": create_main, "helpers.test_deployment_checkpoint": verify_main}


@pytest.fixture
def run_tool(capsys):
    """Run a tool's main() in this process (fast); returns what a subprocess run would."""

    def run(module, *args):
        rc = TOOLS[module]([str(a) for a in args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out, err)

    return run


@pytest.mark.slow
def test_tools_run_as_modules_with_exit_status(tmp_path):
    full = save_full(tmp_path / "model_final_full.pt")
    ok = subprocess.run(
        [sys.executable, "-m", "helpers.create_deployment_checkpoint", str(full)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    again = subprocess.run(
        [sys.executable, "-m", "helpers.create_deployment_checkpoint", str(full)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1 and again.stderr.startswith("error: ")
    bad = subprocess.run(
        [sys.executable, "-m", "helpers.test_deployment_checkpoint", str(tmp_path / "nope.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "nope.pt: no such file" in bad.stderr


def test_create_prints_sizes_and_saving(tmp_path, run_tool):
    full = save_full(tmp_path / "model_final_full.pt")
    proc = run_tool("helpers.create_deployment_checkpoint", full)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "model_final.pt").exists()
    assert "model_final_full.pt" in proc.stdout and "model_final.pt" in proc.stdout
    assert "% smaller" in proc.stdout


def test_create_default_names(tmp_path, run_tool):
    full = save_full(tmp_path / "model_step_500.pt")
    assert run_tool("helpers.create_deployment_checkpoint", full).returncode == 0
    assert run_tool("helpers.create_deployment_checkpoint", full, "--dtype", "bfloat16").returncode == 0
    assert {p.name for p in tmp_path.iterdir()} == {
        "model_step_500.pt",
        "model_step_500_deploy.pt",
        "model_step_500_deploy_bf16.pt",
    }


def test_create_refuses_to_overwrite_unless_forced(tmp_path, run_tool):
    full = save_full(tmp_path / "model_final_full.pt")
    out = tmp_path / "model_final.pt"
    out.write_bytes(b"precious")
    proc = run_tool("helpers.create_deployment_checkpoint", full)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {out}: already exists; pass --force to replace it"
    assert out.read_bytes() == b"precious"
    assert run_tool("helpers.create_deployment_checkpoint", full, "--force").returncode == 0
    assert "optimizer_state_dict" not in torch.load(out, weights_only=True)


def test_create_never_overwrites_its_input(tmp_path, run_tool):
    full = save_full(tmp_path / "model_final_full.pt")
    before = full.read_bytes()
    proc = run_tool("helpers.create_deployment_checkpoint", full, tmp_path / "." / "model_final_full.pt", "--force")
    assert proc.returncode == 1
    assert "is the input file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert full.read_bytes() == before


def test_verify_passes_float32_and_half(tmp_path, run_tool):
    full = save_full(tmp_path / "model_final_full.pt")
    for dtype in ("float32", "float16", "bfloat16"):
        out = tmp_path / f"d_{dtype}.pt"
        assert run_tool("helpers.create_deployment_checkpoint", full, out, "--dtype", dtype).returncode == 0
        proc = run_tool("helpers.test_deployment_checkpoint", out, "--full", full, "--tokens", "8", "--seed", "3")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "all checks passed" in proc.stdout and "loaded in" in proc.stdout and "MB" in proc.stdout


def test_verify_sample_is_reproducible(tmp_path, run_tool):
    full = save_full(tmp_path / "model_final_full.pt")
    out = tmp_path / "d.pt"
    run_tool("helpers.create_deployment_checkpoint", full, out)
    runs = [
        run_tool("helpers.test_deployment_checkpoint", out, "--prompt", "To be", "--tokens", "12", "--seed", "5")
        for _ in range(2)
    ]
    samples = [r.stdout.split("--- sample")[1].split("\n---")[0] for r in runs]
    assert samples[0] == samples[1] and "To be" in samples[0]


def test_verify_names_an_altered_weight(tmp_path, run_tool):
    full = save_full(tmp_path / "model_final_full.pt")
    out = tmp_path / "d.pt"
    run_tool("helpers.create_deployment_checkpoint", full, out)
    ckpt = torch.load(out, weights_only=True)
    ckpt["model_state_dict"]["transformer.h.1.mlp.c_fc.weight"][3, 4] += 1e-3
    save_checkpoint(ckpt, out)
    proc = run_tool("helpers.test_deployment_checkpoint", out, "--full", full, "--tokens", "4")
    assert proc.returncode == 1
    failed = [line for line in proc.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "tensor transformer.h.1.mlp.c_fc.weight: differs" in failed[0]
    assert str(out) in failed[0]


def test_verify_names_a_missing_tensor(tmp_path, run_tool):
    full = save_full(tmp_path / "model_final_full.pt")
    out = tmp_path / "d.pt"
    run_tool("helpers.create_deployment_checkpoint", full, out)
    ckpt = torch.load(out, weights_only=True)
    del ckpt["model_state_dict"]["transformer.ln_f.bias"]
    save_checkpoint(ckpt, out)
    proc = run_tool("helpers.test_deployment_checkpoint", out, "--full", full)
    assert proc.returncode == 1 and "transformer.ln_f.bias" in proc.stderr


def test_verify_samples_with_the_sample_command_s_controls(tmp_path, run_tool, capsys):
    from helpers.commands.sample import main as sample_main

    full = save_full(tmp_path / "model_final_full.pt")
    out = tmp_path / "d.pt"
    run_tool("helpers.create_deployment_checkpoint", full, out)
    controls = ["--prompt", "To be", "--tokens", "30", "--seed", "5", "--top-p", "0.9", "--repetition-penalty", "1.3"]
    assert sample_main([str(out), *controls, "--stop", "no such text"]) == 0
    want = capsys.readouterr().out[:-1]
    proc = run_tool("helpers.test_deployment_checkpoint", out, *controls)
    assert proc.returncode == 0 and f"--- sample (seed 5) ---\n{want}\n---" in proc.stdout
    stop = want[len("To be") :][8:11]
    proc = run_tool("helpers.test_deployment_checkpoint", out, *controls, "--stop", stop)  # ends early: no failure
    assert proc.returncode == 0 and f"---\n{want[: want.index(stop, len('To be'))]}\n---" in proc.stdout
    with pytest.raises(SystemExit) as exit:  # argparse's usage error
        verify_main([str(out), "--top-p", "1.5"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit.value.code == 2 and err.endswith("--top-p must be above 0 and at most 1, not 1.5")
