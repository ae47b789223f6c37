"""The memorization measure: a model that memorised its text is caught, an untrained one is not."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from conftest import tiny_model
from helpers.data import get_encoding
from helpers.memorization import copied_spans, memorization, sample_copying, window_sizes, window_starts
from helpers.model import GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")
WORDS = ["\n"] + [f"w{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(63)]  # 64 "words", each one token
MEMORISER = GPTConfig(n_layer=1, n_head=4, n_embd=64, block_size=32, vocab_size=len(WORDS))


class WordEncoding:
    """An encoding whose tokens are WORDS: enough of tiktoken's for the measure (encode, decode)."""

    def encode(self, text: str) -> list[int]:
        return [WORDS.index(w) for w in text.replace("\n", " \n ").split(" ") if w]

    def decode(self, ids: list[int]) -> str:
        return " ".join(WORDS[i] for i in ids).replace(" \n ", "\n")


def random_words(n: int, seed: int) -> np.ndarray:
    """n tokens of random words, a newline about every 12."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, len(WORDS), n)
    tokens[rng.random(n) < 1 / 12] = 0
    return tokens.astype(np.uint16)


@functools.cache
def memorised() -> tuple[torch.nn.Module, np.ndarray, np.ndarray, float]:
    """A small GPT trained on 2,000 tokens of random words until it knows them by heart; its last loss."""
    train, val = random_words(2000, seed=1), random_words(1000, seed=2)
    torch.manual_seed(0)
    model = tiny_model(0, MEMORISER)
    opt = model.configure_optimizer(0.0, 1e-2, (0.9, 0.95), fused=False)
    data, gen = torch.from_numpy(train.astype(np.int64)), torch.Generator().manual_seed(0)
    steps = 500
    for step in range(steps):
        opt.param_groups[0]["lr"] = 1e-2 * (1 - step / steps)  # decayed to 0: the last errors learned too
        starts = torch.randint(len(data) - MEMORISER.block_size, (32,), generator=gen)
        rows = torch.stack([data[s : s + MEMORISER.block_size + 1] for s in starts.tolist()])
        _, loss = model(rows[:, :-1].contiguous(), rows[:, 1:].contiguous())
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval(), train, val, loss.item()


def test_a_model_that_memorised_its_text_gives_it_back_and_not_the_unseen_text():
    model, train, val, loss = memorised()
    # near 0 but for each window's first tokens, which nothing before them predicts (ln 63 / 32 = 0.13)
    assert loss < 0.35, f"the model did not memorise its text (loss {loss:.3f})"
    m = memorization(model, train, val, WordEncoding(), windows=32, samples=2, sample_tokens=60)
    assert (m["prefix_tokens"], m["suffix_tokens"], m["windows"]) == (16, 16, 32)
    assert m["train_extracted"] >= 0.9
    assert m["val_extracted"] <= 0.05
    # its free samples are the training text: most characters lie in long copied spans
    assert m["sample_copied"] >= 0.5
    assert m["longest_copied_chars"] >= 50
    train_text = WordEncoding().decode(train.tolist())
    where = m["longest_copied"]
    assert train_text[where["offset"] :].startswith(where["text"]) and len(where["text"]) == m["longest_copied_chars"]
    assert where["line"] == train_text.count("\n", 0, where["offset"]) + 1


def test_an_untrained_model_extracts_nothing_and_copies_nothing(data_dir):
    from helpers.data import load_splits

    train, val = load_splits(data_dir, 32)
    m = memorization(tiny_model(0), train[:20000], val, get_encoding(), windows=16, samples=2, sample_tokens=40)
    assert m["train_extracted"] == m["val_extracted"] == 0.0
    assert m["sample_copied"] == 0.0 and m["longest_copied_chars"] == 0
    assert len(m["samples"]) == 2 and all(m["samples"])
    for key in ("train_extracted", "val_extracted", "sample_copied"):
        assert 0.0 <= m[key] <= 1.0


def test_copied_spans_marks_only_long_verbatim_pieces_and_finds_the_longest():
    text = "first line\n" + "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i}\n" for i in range(20))
    piece = text[200:290]  # 90 characters of the text
    # a 90-character copy and a 40-character one (too short), between characters the text lacks
    sample = "#" * 30 + piece + "@" * 30 + text[100:140] + "%" * 10
    inside, longest = copied_spans(sample, text, 50)
    assert inside.sum() == 90 and inside[30:120].all()
    assert longest.chars == 90 and longest.text == piece and longest.offset == 200
    assert text.find(longest.text) == longest.offset and longest.line == text.count("\n", 0, longest.offset) + 1
    other = "nothing of it here at all, not one long piece, none"
    fraction, best = sample_copying([sample, other], text, 50)
    assert fraction == pytest.approx(90 / (len(sample) + len(other)))
    assert best == longest
    assert sample_copying([], text) == (0.0, longest.__class__(0, "", -1, 0))


def test_window_sizes_and_starts():
    assert window_sizes(1024) == (32, 32) and window_sizes(64) == (32, 32)
    assert window_sizes(32) == (16, 16) and window_sizes(128) == (32, 32)
    starts = window_starts(1000, 64, 8)
    assert starts[0] == 0 and starts[-1] == 1000 - 64 and len(starts) == 8
    assert len(window_starts(70, 64, 64)) == 7  # a short split: fewer, distinct windows
    assert len(window_starts(60, 64, 8)) == 0


def test_bench_memorization_times_each_part_beside_transformers(data_dir):
    from helpers.commands.bench_memorization import bench_memorization
    from helpers.data import load_splits

    train, val = load_splits(data_dir, 32)
    rows = dict(bench_memorization(tiny_model(0), train[:20000], val, windows=4, samples=1, sample_tokens=8, batch=4))
    assert rows["  extracted (train, val): ours / theirs"] == "0.000, 0.000 / 0.000, 0.000"
    for name in ("extraction, 8 windows of 16+16 tokens", "  the same by transformers' generate", "the whole measure"):
        assert float(rows[name].split()[0]) >= 0, rows[name]
