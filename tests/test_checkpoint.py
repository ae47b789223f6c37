"""The checkpoint formats and policy of docs/checkpoints.md."""

import subprocess
import sys

import pytest
import torch

from conftest import TINY, full_ckpt, tiny_checkpointer, trained_tiny
from helpers.checkpoints.deployment import create_deployment_checkpoint
from helpers.checkpoints.format import DEPLOYMENT, clean_state_dict, make_checkpoint, to_deployment
from helpers.checkpoints.policy import BEST, PeriodicFiles, periodic_checkpoints, periodic_path, save_best, save_final
from helpers.checkpoints.resume import find_resume_checkpoint
from helpers.checkpoints.storage import load_checkpoint, load_model, save_checkpoint
from helpers.errors import CheckpointError
from helpers.model import GPT, GPTConfig

DOC_FULL_KEYS = {"step", "model_state_dict", "optimizer_state_dict", "loss", "config"}
DOC_DEPLOY_KEYS = {"step", "model_state_dict", "loss", "config"}


def test_full_and_deployment_keys(tmp_path):
    model, opt, loss = trained_tiny()
    full = save_checkpoint(full_ckpt(model, opt, loss=loss), tmp_path / "full.pt")
    deploy, final_full, best = save_final(tmp_path, torch.load(full, weights_only=True))
    assert best.read_bytes() == deploy.read_bytes()  # at the end, the best model is the final one
    for path, keys in ((final_full, DOC_FULL_KEYS), (deploy, DOC_DEPLOY_KEYS)):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert keys <= ckpt.keys()
        assert isinstance(ckpt["config"], dict) and isinstance(ckpt["step"], int) and isinstance(ckpt["loss"], float)
        assert ckpt["model_args"] == TINY.to_dict()
    assert "optimizer_state_dict" not in torch.load(deploy, weights_only=True)


def test_stripped_weights_equal_full_and_file_is_smaller(tmp_path):
    model, opt, _ = trained_tiny(steps=2)
    full_path = save_checkpoint(full_ckpt(model, opt), tmp_path / "model_final_full.pt")
    deploy_path = create_deployment_checkpoint(full_path)
    assert deploy_path.name == "model_final.pt"
    full, deploy = load_checkpoint(full_path), load_checkpoint(deploy_path)
    assert full["model_state_dict"].keys() == deploy["model_state_dict"].keys()
    for key, value in full["model_state_dict"].items():
        assert torch.equal(value, deploy["model_state_dict"][key]), key
    assert deploy_path.stat().st_size < full_path.stat().st_size / 2


def test_half_precision_keeps_tied_embedding_once(tmp_path):
    model, opt, _ = trained_tiny()
    full_path = save_checkpoint(full_ckpt(model, opt), tmp_path / "model_final_full.pt")
    fp32 = create_deployment_checkpoint(full_path, tmp_path / "a.pt")
    fp16 = create_deployment_checkpoint(full_path, tmp_path / "b.pt", dtype="float16")
    sd = torch.load(fp16, weights_only=True)["model_state_dict"]
    assert sd["lm_head.weight"].dtype == torch.float16
    assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()
    assert fp16.stat().st_size < 0.55 * fp32.stat().st_size


def test_prefixes_of_compile_and_ddp_are_stripped(tmp_path):
    model, opt, _ = trained_tiny()
    sd = model.state_dict()
    wrapped = {f"module._orig_mod.{k}": v for k, v in sd.items()}
    assert clean_state_dict(wrapped).keys() == sd.keys()
    ckpt = full_ckpt(model, opt)
    ckpt["model_state_dict"] = wrapped
    save_checkpoint(ckpt, tmp_path / "elsewhere.pt")
    loaded, _ = load_model(tmp_path / "elsewhere.pt")
    assert torch.equal(loaded.transformer.wte.weight, model.transformer.wte.weight)


def test_saving_a_compiled_model_writes_plain_keys():
    model, opt, _ = trained_tiny()
    wrapper = torch.nn.Module()
    wrapper._orig_mod = model  # how torch.compile wraps a module
    ckpt = make_checkpoint(DEPLOYMENT, step=1, model=wrapper, loss=0.0, config={})
    assert ckpt["model_state_dict"].keys() == model.state_dict().keys()


def test_load_model_gives_a_ready_tied_model(tmp_path):
    model, opt, _ = trained_tiny()
    path = save_checkpoint(to_deployment(full_ckpt(model, opt)), tmp_path / "d.pt")
    loaded, ckpt = load_model(path)
    assert not loaded.training
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    x = torch.randint(0, 50257, (1, 8))
    assert torch.equal(loaded(x)[0], model.eval()(x)[0])


def test_rotation_keeps_exactly_the_newest(tmp_path):
    model, opt, _ = trained_tiny()
    (tmp_path / BEST).write_bytes(b"best")
    periodic = PeriodicFiles(tmp_path, keep_last=3, expected=TINY)
    for step in (5, 10, 15, 20, 25):
        _, deleted = periodic.save(full_ckpt(model, opt, step=step))
    assert [s for s, _ in periodic_checkpoints(tmp_path)] == [15, 20, 25]
    assert (tmp_path / BEST).read_bytes() == b"best"  # rotation never touches the best file
    # numeric, not lexicographic, order: step 100 is newer than step 25
    PeriodicFiles(tmp_path, keep_last=2, expected=TINY).save(full_ckpt(model, opt, step=100))
    assert [s for s, _ in periodic_checkpoints(tmp_path)] == [25, 100]
    with pytest.raises(ValueError):
        PeriodicFiles(tmp_path, 0, TINY)


def test_new_periodic_is_written_before_old_is_deleted(tmp_path, monkeypatch):
    model, opt, _ = trained_tiny()
    periodic = PeriodicFiles(tmp_path, keep_last=1, expected=TINY)
    periodic.save(full_ckpt(model, opt, step=1))
    seen = []
    real_rotate = PeriodicFiles.rotate
    monkeypatch.setattr(
        PeriodicFiles,
        "rotate",
        lambda self, newest: (seen.append(periodic_path(tmp_path, 2).exists()), real_rotate(self, newest))[1],
    )
    periodic.save(full_ckpt(model, opt, step=2))
    assert seen == [True]
    assert [s for s, _ in periodic_checkpoints(tmp_path)] == [2]


def test_best_pair_is_deployment_and_full(tmp_path):
    model, opt, _ = trained_tiny()
    path, full_path = save_best(tmp_path, full_ckpt(model, opt, val_loss=3.0))
    ckpt = torch.load(path, weights_only=True)
    assert "optimizer_state_dict" not in ckpt and ckpt["val_loss"] == 3.0
    full = torch.load(full_path, weights_only=True)
    assert full_path.name == "model_best_full.pt" and "optimizer_state_dict" in full
    assert all(torch.equal(full["model_state_dict"][k], v) for k, v in ckpt["model_state_dict"].items())


@pytest.mark.slow
def test_ci_run_best_is_the_lowest_validation_loss(ci_run):
    checkpoint_dir, _ = ci_run
    history = load_checkpoint(checkpoint_dir / "model_final_full.pt")["history"]
    best_step, best_val = min(history["val"][1:], key=lambda sv: sv[1])  # [0] is the untrained model
    best = torch.load(checkpoint_dir / BEST, weights_only=True)
    assert best["step"] == best_step and best["val_loss"] == best_val
    full = load_checkpoint(checkpoint_dir / "model_final_full.pt")
    assert full["step"] == full["best_step"] == best_step and full["best_val_loss"] == best_val


@pytest.mark.slow
def test_every_file_the_notebook_wrote_loads_weights_only(ci_run):
    checkpoint_dir, _ = ci_run
    files = sorted(checkpoint_dir.glob("*.pt"))
    assert len(files) >= 5
    for path in files:
        assert isinstance(torch.load(path, map_location="cpu", weights_only=True), dict)


@pytest.mark.slow
def test_documents_loading_snippets_run(ci_run):
    """The user's two snippets, with GPTConfig built from the checkpoint (the ci model is tiny)."""
    checkpoint_dir, _ = ci_run
    # Loading Deployment Checkpoint
    checkpoint = torch.load(checkpoint_dir / "model_final.pt", map_location="cpu")
    model = GPT(GPTConfig(**checkpoint["model_args"]))
    model.load_state_dict(checkpoint["model_state_dict"])
    model.eval()
    # Loading Full Checkpoint for Training
    checkpoint = torch.load(checkpoint_dir / "model_final_full.pt", map_location="cpu")
    model = GPT(GPTConfig(**checkpoint["model_args"]))
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer = torch.optim.AdamW(model.parameters())
    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    start_step = checkpoint["step"]
    assert start_step == 20
    x = torch.randint(0, 50257, (1, 8))
    _, loss = model(x, x)
    loss.backward()
    optimizer.step()  # training continues


@pytest.mark.slow
def test_gpt2_124m_sizes(tmp_path):
    """The document's sizes: deployment <= 500 MB, full about three times, float16 <= 250 MB."""
    code = f"""
import torch
from pathlib import Path
from helpers.checkpoints.format import FULL, make_checkpoint
from helpers.checkpoints.storage import save_checkpoint
from helpers.checkpoints.deployment import create_deployment_checkpoint
from helpers.model import GPT, GPTConfig
model = GPT(GPTConfig())
opt = model.configure_optimizer(0.1, 6e-4, (0.9, 0.95), fused=False)
x = torch.randint(0, 50257, (1, 64))
model(x, x)[1].backward()
opt.step()
d = Path({str(tmp_path)!r})
ckpt = make_checkpoint(FULL, step=1, model=model, loss=1.0, config={{}}, optimizer=opt)
full = save_checkpoint(ckpt, d / "model_final_full.pt")
print(full.stat().st_size, create_deployment_checkpoint(full).stat().st_size,
      create_deployment_checkpoint(full, d / "half.pt", dtype="float16").stat().st_size)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    full, deploy, half = map(int, out.stdout.split())
    print(f"124M sizes in bytes: full {full:,}, deployment {deploy:,}, float16 {half:,}")
    assert deploy <= 500_000_000
    assert 2.8 < full / deploy < 3.2
    assert half <= 250_000_000


def test_snapshot_reuses_the_last_copy_and_keeps_ties():
    from helpers.checkpoints.writer import snapshot

    model, opt, _ = trained_tiny()
    first = snapshot(full_ckpt(model, opt))
    sd = first["model_state_dict"]
    assert sd["lm_head.weight"] is sd["transformer.wte.weight"]  # tied: one copy
    assert sd["lm_head.weight"].data_ptr() != model.lm_head.weight.data_ptr()  # a copy, not a view
    with torch.no_grad():
        model.transformer.wte.weight.add_(1.0)
    second = snapshot(full_ckpt(model, opt, step=2), into=first)
    sd2 = second["model_state_dict"]
    assert sd2["transformer.wte.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()  # reused memory
    assert sd2["lm_head.weight"] is sd2["transformer.wte.weight"]
    assert torch.equal(sd2["transformer.wte.weight"], model.transformer.wte.weight)
    for key, value in model.state_dict().items():
        assert torch.equal(sd2[key], value), key
    assert second["step"] == 2
    exp_avg = next(iter(opt.state.values()))["exp_avg"]
    assert torch.equal(next(iter(second["optimizer_state_dict"]["state"].values()))["exp_avg"], exp_avg)


def test_background_writes_are_the_state_at_save_time(tmp_path):
    files = tiny_checkpointer(tmp_path, async_save=True, keep_last=3)
    weight = files.state.model.transformer.h[0].mlp.c_fc.weight
    for step in (1, 2, 3):
        with torch.no_grad():
            weight.fill_(float(step))
        files.run.step = step
        files.save()
        with torch.no_grad():
            weight.fill_(-1.0)  # training goes on while it is written
    files.close()
    for step in (1, 2, 3):
        weights = load_checkpoint(periodic_path(tmp_path, step))["model_state_dict"]["transformer.h.0.mlp.c_fc.weight"]
        assert torch.all(weights == float(step)), step


def test_background_write_errors_reach_the_loop():
    from helpers.checkpoints.writer import BackgroundWriter

    def fail():
        raise OSError(28, "No space left on device")

    writer = BackgroundWriter()
    writer.submit(fail)
    with pytest.raises(OSError, match="No space left"):
        writer.wait()


def test_the_best_state_is_a_copy_and_never_one_a_write_is_reading(tmp_path, monkeypatch):
    """keep_best copies into the last best copy's memory, except while a background write reads that copy."""
    import threading

    import helpers.checkpoints.checkpointer as checkpointer

    files = tiny_checkpointer(tmp_path, async_save=True)
    weight = files.state.model.transformer.wte.weight
    with torch.no_grad():
        weight.fill_(1.0)
    files.run.step = 1
    files.keep_best()
    with torch.no_grad():
        weight.add_(1.0)  # training goes on changing the tensors in place
    lent = files.best
    assert torch.all(lent["model_state_dict"]["transformer.wte.weight"] == 1.0) and lent["step"] == 1
    written = threading.Event()
    real_save_best = checkpointer.save_best
    monkeypatch.setattr(checkpointer, "save_best", lambda folder, best: (written.wait(5), real_save_best(folder, best)))
    files.save()  # the best pair, written from the copy, in the background: it is lent to the write
    files.run.step = 2
    files.keep_best()  # while the write reads the first copy
    assert files.best is not lent and torch.all(lent["model_state_dict"]["transformer.wte.weight"] == 1.0)
    written.set()
    files.writer.wait()
    assert load_checkpoint(tmp_path / "model_best_full.pt")["step"] == 1
    memory = files.best["model_state_dict"]["transformer.wte.weight"].data_ptr()
    files.run.step = 3
    files.keep_best()  # nothing reads the copy now: its memory is reused
    assert files.best["step"] == 3 and files.best["model_state_dict"]["transformer.wte.weight"].data_ptr() == memory
    files.close()


def test_a_new_run_in_the_same_kernel_waits_for_the_last_runs_write(tmp_path):
    """Run all again after an interrupt: the old run's checkpointer (the notebook's `files`, until the Resume cell
    runs again) finishes its write before the new one sweeps temporary files, without being handed to it."""
    import threading

    release, written = threading.Event(), []

    def slow_write():
        release.wait(5)
        written.append(3)

    old = tiny_checkpointer(tmp_path / "ck", async_save=True)
    old.writer.submit(slow_write)
    threading.Timer(0.3, release.set).start()
    new = tiny_checkpointer(tmp_path / "ck")
    assert written == [3] and new.lock is not None and new.read_only is None and old.lock is None
    new.close()

    def fail():
        raise OSError(28, "No space left on device")

    old = tiny_checkpointer(tmp_path / "ck", async_save=True)
    old.writer.submit(fail)
    with pytest.raises(OSError, match="No space left"):  # the old run's failed write is not lost
        tiny_checkpointer(tmp_path / "ck")


def test_files_in_the_documents_own_format_work(tmp_path):
    """The user's existing files: the summary's keys only, `config` holding GPTConfig's fields,
    and a causal-mask buffer as some GPT-2 code keeps one."""
    from helpers.commands.create_deployment_checkpoint import main as create_main
    from helpers.commands.test_deployment_checkpoint import main as verify_main

    model, opt, loss = trained_tiny()
    sd = dict(model.state_dict())
    sd["transformer.h.0.attn.bias"] = torch.ones(1, 1, TINY.block_size, TINY.block_size).tril()
    full = tmp_path / "model_final_full.pt"
    torch.save(
        {
            "step": 7,
            "model_state_dict": sd,
            "optimizer_state_dict": opt.state_dict(),
            "loss": loss,
            "config": TINY.__dict__,
        },
        full,
    )
    assert create_main([str(full)]) == 0
    assert verify_main([str(tmp_path / "model_final.pt"), "--full", str(full), "--tokens", "3"]) == 0
    path, ckpt = find_resume_checkpoint(tmp_path, "auto", TINY)
    assert path == full and ckpt["step"] == 7
    loaded, _ = load_model(tmp_path / "model_final.pt")
    assert torch.equal(loaded.transformer.wte.weight, model.transformer.wte.weight)


def nanogpt_ckpt(path, iter_num=250):
    """nanoGPT's train.py checkpoint, key for key: a compiled model's weights, AdamW with two groups, padded vocab."""
    torch.manual_seed(0)
    config = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50304, dropout=0.0, bias=False)
    model = GPT(config)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3
    )
    x = torch.randint(0, 50257, (2, 16))
    model(x, x)[1].backward()
    optimizer.step()
    torch.save(
        {
            "model": {f"_orig_mod.{k}": v for k, v in model.state_dict().items()},  # torch.compile's names
            "optimizer": optimizer.state_dict(),
            "model_args": dict(
                n_layer=2, n_head=2, n_embd=32, block_size=16, bias=False, vocab_size=50304, dropout=0.0
            ),
            "iter_num": iter_num,
            "best_val_loss": torch.tensor(1.4697),
            "config": {
                "out_dir": "out-shakespeare-char",
                "dataset": "shakespeare",
                "compile": True,
                "learning_rate": 1e-3,
            },
        },
        path,
    )
    return model.eval(), path


def test_nanogpt_checkpoint_is_stripped_to_a_deployment_one(tmp_path, capsys):
    from helpers.commands.create_deployment_checkpoint import main as create_main
    from helpers.commands.test_deployment_checkpoint import main as verify_main

    model, path = nanogpt_ckpt(tmp_path / "ckpt.pt")
    out = tmp_path / "model_final.pt"
    assert create_main([str(path), str(out)]) == 0
    ckpt = torch.load(out, weights_only=True)
    assert (ckpt["kind"], ckpt["format"], ckpt["step"]) == (DEPLOYMENT, "gpt2-124m-colab", 250)
    assert ckpt["loss"] == pytest.approx(1.4697) and ckpt["config"]["dataset"] == "shakespeare"
    assert ckpt["model_args"]["vocab_size"] == 50304 and ckpt["model_args"]["bias"] is False  # kept as nanoGPT had it
    assert "optimizer_state_dict" not in ckpt and "optimizer" not in ckpt and "model" not in ckpt
    assert ckpt["model_state_dict"].keys() == model.state_dict().keys()  # no _orig_mod. left
    assert all(torch.equal(ckpt["model_state_dict"][k], v) for k, v in model.state_dict().items())
    loaded, _ = load_model(out)
    idx = torch.randint(0, 50257, (1, 16))
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], model(idx)[0])
    capsys.readouterr()
    assert verify_main([str(out), "--tokens", "3"]) == 0
    # the original as it is: a clear line where a deployment checkpoint is asked for, and no resume from it
    assert verify_main([str(path), "--tokens", "3"]) == 1
    assert f"{path}: is nanoGPT's ckpt.pt" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match=r"ckpt.pt: is nanoGPT's ckpt.pt, whose optimizer state .* cannot resume"):
        find_resume_checkpoint(
            tmp_path, str(path), GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50304, bias=False)
        )
