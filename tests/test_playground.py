"""The notebook's Generate panel: the text streams out piece by piece and joins up to the whole sample."""

import io
import re

import pytest
import torch

from conftest import Scripted, run_script, tiny_model
from helpers.data import get_encoding
from helpers.ui import playground


def test_streamed_pieces_join_up_to_the_generated_text():
    model, enc = tiny_model(0), get_encoding()
    pieces = list(playground.sample_stream(model, enc, "ROMEO:", 12, 0.8, "cpu", seed=3))
    out = model.generate(torch.tensor([enc.encode("ROMEO:")]), 12, temperature=0.8, top_k=200, seed=3)
    assert pieces[0] == "ROMEO:" and len(pieces) > 2
    assert (
        "".join(pieces)
        == enc.decode(out[0].tolist())
        == playground.sample(model, enc, "ROMEO:", 12, 0.8, "cpu", seed=3)
    )


def test_a_character_split_across_tokens_is_shown_whole():
    enc = get_encoding()
    tokens = enc.encode(" smile 😀 done")  # the emoji is two tokens, the first a part of its bytes
    pieces = list(playground.sample_stream(Scripted(tokens), enc, "A", len(tokens), 1.0, "cpu"))
    assert "".join(pieces) == "A smile 😀 done"
    assert pieces == ["A", " smile", " 😀", " done"]  # no replacement character on the way
    # stopped inside the character, the part is shown rather than lost
    cut = tokens.index(enc.encode(" 😀")[0]) + 1
    assert "".join(playground.sample_stream(Scripted(tokens), enc, "A", cut, 1.0, "cpu")).endswith("\ufffd")


def test_generate_button_prints_the_text_as_it_comes(monkeypatch):
    model, enc = tiny_model(0), get_encoding()
    monkeypatch.setattr(playground, "in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda *a: None)
    panel = playground.generation_panel(model, enc, "cpu")
    widget = {w.description: w for w in panel.children if hasattr(w, "description")}
    widget["Prompt"].value, widget["Tokens"].value, widget["Temperature"].value = "JULIET:", 10, 0.8
    button = widget["Generate"]
    writes = []

    class Recorder(io.StringIO):
        def write(self, s):
            writes.append(s)
            return len(s)

    monkeypatch.setattr("sys.stdout", Recorder())
    button.click()  # outside a kernel the Output widget lets the prints through to stdout
    text = "".join(writes).split("\r")[-1]  # after clear_output's terminal codes
    assert text.startswith("JULIET:") and text.endswith("\n") and len(text) > len("JULIET:\n")
    assert len([w for w in writes if w not in ("", "\n")]) > 3  # printed piece by piece, not at the end


def test_sample_line_is_one_line_and_leaves_the_run_s_random_numbers_alone():
    from helpers.training.hardware import detect_hardware

    model = tiny_model(0).train()
    state = torch.get_rng_state()
    line = playground.sample_line(model, 12, detect_hardware("cpu", "float32"), seed=5)
    assert line.strip() and "\n" not in line
    assert torch.equal(torch.get_rng_state(), state) and model.training
    assert line == playground.sample_line(model, 12, detect_hardware("cpu", "float32"), seed=5)


@pytest.mark.slow
def test_training_prints_a_sample_at_each_new_best(tmp_path):
    proc = run_script(tmp_path, max_steps=6, eval_every=2, best_sample_tokens=6)
    lines = proc.stdout.splitlines()
    evals = [i for i, line in enumerate(lines) if re.match(r"step \d+ \(epoch", line)]
    assert len(evals) == 3
    for i in evals:
        step, best_step = re.match(r"step (\d+) .*at step (\d+)\)", lines[i]).groups()
        assert lines[i + 1].startswith("  sample: ") == (step == best_step), lines[i : i + 2]
