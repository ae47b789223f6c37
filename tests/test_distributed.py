"""The notebook's .py under torchrun: two CPU processes (gloo) train as one does, and only rank 0 writes.

The reference is the session's single-process ci run (`ci_run`: 20 steps of 2 micro-batches).
Here two processes take one micro-batch each, so every step sees the same global batch.
"""

import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from conftest import run_script, sitecustomize_env
from helpers.checkpoints.storage import read_checkpoint
from helpers.errors import SettingError
from helpers.fileio import TMP_MARK
from helpers.training.distributed import Processes, init_processes, print0

pytestmark = [
    pytest.mark.slow,  # torchrun: the notebook's .py in three processes
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs gloo"),
]

TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")  # standalone: a free port
FAST = {"sample_tokens": 1}  # the sample cell's length; training is the same
# One thread per process, as torchrun gives its workers: the model is tiny, and on a busy machine
# spinning OpenMP threads make a run several times slower.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}

# Imported by every Python process of a run (the torchrun launcher too): an audit hook logs, per
# process, each file created, renamed, removed or opened for writing under the checkpoint folder.
WRITE_AUDIT = textwrap.dedent("""
    import os, sys

    _watch = os.path.abspath(os.environ["GPT2_CHECKPOINT_DIR"])
    _name = f"{os.environ.get('RANK', 'launcher')}-{os.getpid()}.log"
    _log = os.open(os.path.join(os.environ["WRITE_AUDIT_DIR"], _name),
                   os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def _hook(event, args):
        try:
            if event == "open" and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR):
                path = args[0]
            elif event in ("os.rename", "os.remove", "os.mkdir"):
                path = args[1] if event == "os.rename" else args[0]
            else:
                return
            if not isinstance(path, int) and os.path.abspath(os.fsdecode(path)).startswith(_watch):
                os.write(_log, f"{event} {os.fsdecode(path)}\\n".encode())
        except Exception:
            pass  # an audit hook that raises would break the write it watches

    sys.addaudithook(_hook)
""")


def audited(tmp_path: Path) -> dict:
    """Environment that loads WRITE_AUDIT into every process, logging to tmp_path/audit."""
    log_dir = tmp_path / "audit"
    log_dir.mkdir()
    return {**sitecustomize_env(tmp_path / "hook", WRITE_AUDIT), "WRITE_AUDIT_DIR": str(log_dir), **ONE_THREAD}


def writes_by_process(log_dir: Path) -> dict[str, list[str]]:
    """{'0': [...], '1': [...], 'launcher': [...]}: what each process wrote under the checkpoint folder."""
    writes: dict[str, list[str]] = {}
    for log in log_dir.iterdir():
        writes.setdefault(log.name.split("-")[0], []).extend(log.read_text().splitlines())
    return writes


def without_key_bias(key: str, t: torch.Tensor, n_embd: int) -> torch.Tensor:
    """The tensor less the attention's key bias (the middle third of c_attn.bias).

    The key bias cannot change the output (softmax ignores a shift shared by all scores), so its
    gradient is rounding noise, which AdamW turns into steps that differ with the order of the
    floating-point sums: one process and two end with different values there, both irrelevant.
    """
    return torch.cat([t[:n_embd], t[2 * n_embd :]]) if key.endswith("attn.c_attn.bias") else t


def assert_same_weights(path_a: Path, path_b: Path) -> None:
    ckpt_a, ckpt_b = read_checkpoint(path_a), read_checkpoint(path_b)
    a, b, n_embd = ckpt_a["model_state_dict"], ckpt_b["model_state_dict"], ckpt_a["model_args"]["n_embd"]
    assert a.keys() == b.keys()
    for key in a:
        x, y = without_key_bias(key, a[key], n_embd), without_key_bias(key, b[key], n_embd)
        assert torch.allclose(x, y, atol=1e-5, rtol=1e-4), key


def assert_same_history(path_a: Path, path_b: Path) -> None:
    a, b = read_checkpoint(path_a)["history"], read_checkpoint(path_b)["history"]
    for split in ("train", "val"):
        steps_a, losses_a = zip(*a[split])
        steps_b, losses_b = zip(*b[split])
        assert steps_a == steps_b, split
        assert torch.allclose(torch.tensor(losses_a), torch.tensor(losses_b), atol=1e-5, rtol=1e-4), split


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, data_dir) -> tuple[Path, dict[str, list[str]]]:
    """The ci preset with 2 processes x 1 micro-batch, its files and who wrote them."""
    tmp = tmp_path_factory.mktemp("ddp")
    checkpoint_dir = tmp / "checkpoints"
    proc = run_script(checkpoint_dir, python_args=TORCHRUN, extra_env=audited(tmp), **FAST)
    (tmp / "stdout.txt").write_text(proc.stdout)  # for test_process_0_speaks_once
    return checkpoint_dir, writes_by_process(tmp / "audit")


def test_two_processes_train_as_one(two_process_run, ci_run):
    checkpoint_dir, _ = two_process_run
    reference, _ = ci_run
    assert_same_weights(checkpoint_dir / "model_final.pt", reference / "model_final.pt")
    assert_same_history(checkpoint_dir / "model_final_full.pt", reference / "model_final_full.pt")


def test_only_rank_0_writes(two_process_run):
    checkpoint_dir, writes = two_process_run
    assert writes["0"], "the audit hook saw no writes at all"
    assert writes["1"] == [] and writes["launcher"] == [], writes  # logs exist: the hook ran there too
    names = {p.name for p in checkpoint_dir.iterdir()}
    assert not [n for n in names if TMP_MARK in n]
    # ci preset: 20 steps, save_every 5, keep_last 2; the same files as one process writes
    assert names == {
        "model_step_10.pt",
        "model_step_15.pt",
        "model_best.pt",
        "model_best_full.pt",
        "model_final.pt",
        "model_final_full.pt",
        "model_final_fp16.pt",
        "loss.png",
        "run_summary.json",
        "report.md",
        "tensorboard",
    }


def test_checkpoint_of_two_processes_resumes_in_one(two_process_run, ci_run, tmp_path):
    checkpoint_dir, _ = two_process_run
    reference, _ = ci_run
    proc = run_script(tmp_path, extra_env=ONE_THREAD, resume=checkpoint_dir / "model_step_15.pt", **FAST)
    assert "at step 15" in proc.stdout
    assert_same_weights(tmp_path / "model_final.pt", reference / "model_final.pt")
    assert_same_history(tmp_path / "model_final_full.pt", reference / "model_final_full.pt")


def test_process_0_speaks_once_and_the_others_leave_after_the_final_pair(two_process_run):
    """print0 before the end, leave_unless_main after it: every line of the run is printed once."""
    checkpoint_dir, _ = two_process_run
    stdout = (checkpoint_dir.parent / "stdout.txt").read_text()
    for line in ("starting from scratch", "training ended: ", "the final model: ", "ROMEO:", "model_final_fp16.pt: "):
        assert stdout.count(line) == 1, (line, stdout[-3000:])


def test_processes_share_a_step_and_refuse_micro_batches_that_do_not_divide(monkeypatch, capsys):
    assert Processes(rank=1, local_rank=1, world_size=2).share([10, 11, 12, 13]) == [11, 13]
    assert Processes().share([10, 11]) == [10, 11] and Processes().gpu is None
    monkeypatch.setenv("RANK", "1")
    print0("from process 1")
    monkeypatch.setenv("RANK", "0")
    print0("from process 0")
    assert capsys.readouterr().out == "from process 0\n"
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SettingError, match="GPT2_GRAD_ACCUM_STEPS=3: must be a multiple of the 2 processes"):
        init_processes("cpu", grad_accum_steps=3)  # before joining any group: nothing to wait for
