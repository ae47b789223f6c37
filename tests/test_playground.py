"""The notebook's Generate panel: the text streams out piece by piece and joins up to the whole sample."""

import io

import torch

from helpers import playground
from helpers.data import get_encoding

from conftest import tiny_model


def test_streamed_pieces_join_up_to_the_generated_text():
    model, enc = tiny_model(0), get_encoding()
    pieces = list(playground.sample_stream(model, enc, "ROMEO:", 12, 0.8, "cpu", seed=3))
    out = model.generate(torch.tensor([enc.encode("ROMEO:")]), 12, temperature=0.8, top_k=200, seed=3)
    assert pieces[0] == "ROMEO:" and len(pieces) > 2
    assert "".join(pieces) == enc.decode(out[0].tolist()) == playground.sample(model, enc, "ROMEO:", 12, 0.8, "cpu", seed=3)


class Scripted:
    """A stand-in model whose generate_stream yields the given tokens."""

    def __init__(self, tokens: list[int]):
        self.tokens = tokens

    def generate_stream(self, idx, max_new_tokens, **_):
        yield from (torch.tensor([[t]]) for t in self.tokens[:max_new_tokens])


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
    prompt, length, temperature, button, _ = panel.children
    prompt.value, length.value, temperature.value = "JULIET:", 10, 0.8
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
