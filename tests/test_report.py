"""The run's report card, python -m helpers.report, TensorBoard's event files and runs side by side."""

from __future__ import annotations

import json
import math
import shutil
import sys
import threading

import pytest
import torch

from conftest import save_full, tensorboard_events
from helpers.checkpoints.storage import read_checkpoint
from helpers.commands.report import main
from helpers.run_comparison import find_runs, runs_table
from helpers.ui.tensorboard import LOG_DIR

MEMORIZATION_KEYS = {
    "prefix_tokens",
    "suffix_tokens",
    "windows",
    "train_extracted",
    "val_extracted",
    "sample_copied",
    "longest_copied_chars",
}


@pytest.mark.slow
def test_a_run_writes_its_report_card_summary_and_tensorboard_curves(ci_run):
    folder, proc = ci_run
    summary = json.loads((folder / "run_summary.json").read_text())
    assert summary["val_perplexity"] == pytest.approx(math.exp(summary["final_val_loss"]), rel=1e-4)
    assert set(summary["memorization"]) >= MEMORIZATION_KEYS
    for key in ("train_extracted", "val_extracted", "sample_copied"):
        assert 0.0 <= summary["memorization"][key] <= 1.0
    report = (folder / "report.md").read_text()
    assert "| extracted:" in report and "![training and validation loss](loss.png)" in report
    assert f"{summary['val_perplexity']:,.2f}" in report and summary["stop_reason"] in report
    run = read_checkpoint(folder / "model_final.pt")
    assert run["samples"] and [s[0] for s in run["samples"]] == sorted({s[0] for s in run["samples"]})
    for step, _, text in run["samples"]:  # the samples as it trained, in the report
        assert f"step {step}," in report and text.split(" / ")[0] in report

    scalars, texts = tensorboard_events(folder)
    for split in ("train", "val"):  # the final model's history (to its best step, here the last), each step once
        logged, history = scalars[f"{split}/loss"], run["history"][split]
        assert [s for s, _ in logged] == [s for s, _ in history]
        assert [v for _, v in logged] == pytest.approx([v for _, v in history], rel=1e-6)  # float32 there
    assert [s for s, _ in scalars["train/lr"]] == [s for s, _ in run["history"]["train"]]
    assert all(v > 0 for _, v in scalars["train/tokens_per_s"])
    assert texts["samples/text_summary"] == [s[0] for s in run["samples"]]


def test_without_tensorboard_the_run_says_how_to_get_it_in_one_line_and_logs_nothing(tmp_path, monkeypatch, capsys):
    from helpers.ui.tensorboard import TensorBoardLog

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    board = TensorBoardLog(tmp_path, 0)
    board.train(1, 1.0, 1e-3, 100.0)
    board.val(1, 2.0)
    board.sample(1, "text")
    board.close()
    assert capsys.readouterr().out == (
        "TensorBoard logs off: tensorboard is not installed (pip install tensorboard); training goes on\n"
    )
    assert not (tmp_path / LOG_DIR).exists()


@pytest.mark.slow
def test_the_report_command_measures_a_checkpoint_against_its_text(ci_run, capsys, one_thread):
    folder, _ = ci_run
    assert main([str(folder / "model_final.pt"), "--json", "--windows", "8"]) == 0
    out = json.loads(capsys.readouterr().out)
    summary = json.loads((folder / "run_summary.json").read_text())
    assert out["val_loss"] == pytest.approx(summary["final_val_loss"], rel=1e-5)  # measured as its run measured it
    assert out["val_perplexity"] == pytest.approx(torch.tensor(out["val_loss"]).exp().item(), rel=1e-5)
    assert set(out["memorization"]) >= MEMORIZATION_KEYS and out["memorization"]["windows"] == 8
    assert out["train_loss"] > 0 and len(out["samples"]) == 4
    assert main([str(folder / "model_final_full.pt"), "--windows", "4", "--batches", "1"]) == 0  # a full file: a table
    out = capsys.readouterr().out
    assert "| extracted:" in out and "(4 windows)" in out and "sample:" in out


def test_the_report_command_refuses_bad_input_in_one_line(tmp_path, data_dir, capsys):
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("hello")
    other = tmp_path / "other.txt"
    other.write_text("Some other text entirely. " * 400)
    trained = save_full(tmp_path / "model.pt", data={"text_sha256": "0" * 64})
    cases = [
        ([str(not_ckpt)], "notes.pt: not a torch checkpoint"),
        ([str(tmp_path / "missing.pt")], "missing.pt: no such file"),
        ([str(trained), "--data", str(tmp_path / "gone.txt")], "gone.txt: no such file"),
        ([str(trained), "--data", str(other)], "is not the text model.pt was trained on"),
    ]
    for argv, message in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_runs_side_by_side_lists_finished_and_unfinished_runs(tmp_path):
    finished, unfinished, empty = tmp_path / "a-finished", tmp_path / "b-unfinished", tmp_path / "c-empty"
    empty.mkdir()
    config = {"preset": "ci", "batch_size": 4, "block_size": 32, "grad_accum_steps": 2}
    history = {"train": [[1, 9.0], [2, 8.0]], "val": [[0, 10.0], [2, 8.5]]}
    finished.mkdir()
    save_full(finished / "model_final.pt", step=2, config=config, history=history, best_val_loss=8.5)
    summary = dict(steps=2, epochs=0.5, best_val_loss=8.5, session_seconds=60, device="cpu", val_perplexity=4900.0)
    (finished / "run_summary.json").write_text(
        json.dumps(dict(summary, memorization=dict(train_extracted=0.25, val_extracted=0.0)))
    )
    unfinished.mkdir()
    save_full(unfinished / "model_step_2.pt", step=2, config=config, history=history, best_val_loss=8.5)
    runs = find_runs(tmp_path)
    assert [r["folder"] for r in runs] == ["a-finished", "b-unfinished"]
    assert runs[0]["finished"] and not runs[1]["finished"]
    assert runs[0]["val_curve"] == [[0, 10.0], [2, 8.5]] and runs[0]["tokens_per_step"] == 256
    table = runs_table(runs).splitlines()
    assert "25% / 0%" in table[1] and "4,900.0" in table[1] and "1.0" in table[1]
    assert "b-unfinished (unfinished)" in table[2]
    assert main(["--runs", str(tmp_path), "--chart", str(tmp_path / "runs.png")]) == 0
    assert (tmp_path / "runs.png").stat().st_size > 0
    shutil.rmtree(finished)
    (unfinished / "model_step_2.pt").write_bytes(b"damaged")
    assert "unreadable" in runs_table(find_runs(tmp_path))


@pytest.mark.slow
def test_the_hub_card_and_the_static_space_card_hold_the_report_table(ci_run, tmp_path):
    from helpers.checkpoints.storage import load_model
    from helpers.hf.folders import export_hf
    from helpers.hf.space import space_facts
    from helpers.hf.static_space import static_card
    from helpers.report_card import FIGURES, figures_beside, figures_table

    folder, _ = ci_run
    summary = json.loads((folder / "run_summary.json").read_text())
    table = figures_table(summary)
    assert "| extracted:" in table and f"{summary['val_perplexity']:,.2f}" in table
    assert table in (export_hf(folder / "model_final.pt", tmp_path / "hf") / "README.md").read_text()
    # a checkpoint of another step than the run's final one: no table that is not its own
    shutil.copyfile(folder / "run_summary.json", tmp_path / "run_summary.json")
    save_full(tmp_path / "model_step_1.pt", step=1)
    assert figures_beside(tmp_path / "model_step_1.pt", 1) is None
    assert "Report card" not in (export_hf(tmp_path / "model_step_1.pt", tmp_path / "hf1") / "README.md").read_text()

    model, ckpt = load_model(folder / "model_final.pt")
    facts = space_facts(model, ckpt, "model_final.pt", "int8", "A title")
    model_file = dict(file="model.onnx", dtype="int8", bytes=1000)
    facts.update(models=dict(wasm=model_file, webgpu=model_file), runtime={}, file_bytes=2000)
    assert "Report card" not in static_card(facts)
    facts["report"] = {k: figures_beside(folder / "model_final.pt", ckpt["step"])[k] for k in FIGURES}
    assert table in static_card(facts)


# TensorBoard's writer thread also prints its error as it dies (threading's excepthook): its own, not ours
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_full_disk_turns_the_tensorboard_log_off_in_one_line_not_training(tmp_path, monkeypatch, capsys):
    """Event files are written by TensorBoard's own thread and file layer (not open/os.fdopen, which
    tests/small_disk.py bounds): its record writer fails as on a full disk, after the first records."""
    import errno

    from tensorboard.summary.writer import record_writer

    from helpers.ui.tensorboard import TensorBoardLog

    real_write, written = record_writer.RecordWriter.write, []

    def write(self, data):
        written.append(data)
        if len(written) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", write)
    board = TensorBoardLog(tmp_path, 0)
    for step in range(1, 200):
        board.train(step, 1.0, 1e-3, 1000.0)
        board.val(step, 2.0)
    board.sample(200, "text")
    board.close()
    for thread in threading.enumerate():  # its writer thread ended by the error: within this test, for the filter
        if type(thread).__name__ == "_AsyncWriterThread":
            thread.join(10)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("TensorBoard logs off: OSError") and "training goes on" in out[0], out
