"""How much of its training text a model reproduces: extraction (Carlini et al.) and copying in free samples.

Extraction is the measure of Carlini et al. 2022, "Quantifying Memorization Across Neural
Language Models": a window of prefix_tokens + suffix_tokens tokens is *extracted* when the model,
given the prefix, continues it greedily with exactly the true suffix. It is measured on as many
windows of the validation text as of the training text: the validation figure is the baseline,
what a model extracts from text it has never seen (common phrases, a speaker's name). A model
that generalises extracts about as little from training as from validation.

Copying looks at what the model writes freely (temperature 0.8, top-k 200, the Space's defaults):
the share of sampled characters that lie inside a span of at least MIN_COPY_CHARS characters
found verbatim in the training text, and the longest such span. docs/report.md says how to read both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import tiktoken
import torch

from helpers.model import GPT

PREFIX_TOKENS = SUFFIX_TOKENS = 32  # Carlini et al.'s 50 + 50 do not fit the small contexts; 32 + 32 does for 64+
MIN_COPY_CHARS = 50  # a copied span: at least this many characters found verbatim in the training text
SAMPLE_TEMPERATURE, SAMPLE_TOP_K = 0.8, 200  # the page's defaults: what a visitor reads


@dataclass
class Copied:
    """The longest span of a sample found verbatim in the training text, and where it is there."""

    chars: int  # its length in characters (0: no span of MIN_COPY_CHARS or more)
    text: str  # the span itself
    offset: int  # where it starts in the training text, in characters
    line: int  # the line of the training text it starts on, from 1


def window_sizes(block_size: int) -> tuple[int, int]:
    """prefix_tokens and suffix_tokens for a model's context: 32 + 32, or half of block_size each when smaller."""
    if block_size >= PREFIX_TOKENS + SUFFIX_TOKENS:
        return PREFIX_TOKENS, SUFFIX_TOKENS
    return block_size // 2, block_size // 2


def window_starts(n_tokens: int, length: int, windows: int) -> np.ndarray:
    """Start positions of `windows` windows of `length` tokens spread evenly over a split (fewer if it is short).

    Evenly spread, not drawn: the same windows every time, so two models (or two runs) are
    measured on the same text, and the whole split is covered.
    """
    last = n_tokens - length
    if last < 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, last, num=windows).round().astype(np.int64))


@torch.no_grad()
def extracted(
    model: GPT, tokens: np.ndarray, windows: int, prefix_tokens: int, suffix_tokens: int, batch_size: int = 32
) -> float:
    """The fraction of windows whose suffix the model's greedy continuation of the prefix reproduces exactly.

    Batched: every window's prefix has the same length, so generate (with its KV cache) continues
    batch_size of them at once; top_k=1 is its greedy path (argmax), no random numbers drawn.
    """
    starts = window_starts(len(tokens), prefix_tokens + suffix_tokens, windows)
    if len(starts) == 0:
        return float("nan")
    device = next(model.parameters()).device
    rows = np.stack([tokens[s : s + prefix_tokens + suffix_tokens].astype(np.int64) for s in starts])
    hits = 0
    for batch in torch.from_numpy(rows).split(batch_size):
        batch = batch.to(device)
        out = model.generate(batch[:, :prefix_tokens], suffix_tokens, top_k=1)
        hits += (out[:, prefix_tokens:] == batch[:, prefix_tokens:]).all(dim=1).sum().item()
    return hits / len(starts)


def copied_spans(sample: str, train_text: str, min_chars: int = MIN_COPY_CHARS) -> tuple[np.ndarray, Copied]:
    """Which characters of sample lie in a span of at least min_chars found verbatim in train_text; the longest.

    Matching statistics: at each position, the longest piece of the sample starting there that
    the training text holds, found by extending the previous position's piece less one character
    (it is still in the text), so each position costs a few substring searches.
    """
    inside = np.zeros(len(sample), dtype=bool)
    best = Copied(0, "", -1, 0)
    length = 0
    for i in range(len(sample) - min_chars + 1):
        length = max(length - 1, 0)
        if length < min_chars and sample[i : i + min_chars] not in train_text:
            length = 0  # the common case: no copy starts here
            continue
        length = max(length, min_chars)
        while i + length < len(sample) and sample[i : i + length + 1] in train_text:
            length += 1
        inside[i : i + length] = True
        if length > best.chars:
            offset = train_text.find(sample[i : i + length])
            best = Copied(length, sample[i : i + length], offset, train_text.count("\n", 0, offset) + 1)
    return inside, best


def sample_copying(samples: list[str], train_text: str, min_chars: int = MIN_COPY_CHARS) -> tuple[float, Copied]:
    """The fraction of the samples' characters inside a copied span of min_chars or more, and the longest span."""
    covered = total = 0
    longest = Copied(0, "", -1, 0)
    for sample in samples:
        inside, best = copied_spans(sample, train_text, min_chars)
        covered, total = covered + int(inside.sum()), total + len(sample)
        if best.chars > longest.chars:
            longest = best
    return (covered / total if total else 0.0), longest


@torch.no_grad()
def free_samples(model: GPT, enc: tiktoken.Encoding, samples: int, tokens: int, seed: int) -> list[str]:
    """`samples` texts of `tokens` tokens each from a newline, at the page's temperature and top-k, in one batch."""
    device = next(model.parameters()).device
    start = torch.tensor([enc.encode("\n")] * samples, device=device)
    out = model.generate(start, tokens, temperature=SAMPLE_TEMPERATURE, top_k=SAMPLE_TOP_K, seed=seed)
    return [enc.decode(row[1:].tolist()) for row in out]


def memorization(
    model: GPT,
    train_tokens: np.ndarray,
    val_tokens: np.ndarray,
    enc: tiktoken.Encoding,
    windows: int = 64,
    samples: int = 4,
    sample_tokens: int = 256,
    seed: int = 1337,
) -> dict:
    """The memorization figures of a model against the text it was trained on (docs/report.md), as plain data.

    {prefix_tokens, suffix_tokens, windows, train_extracted, val_extracted, sample_copied,
    longest_copied_chars, longest_copied: {text, offset, line}, samples}: windows from each
    split; samples free texts of sample_tokens tokens, checked against the training text.
    """
    was_training = model.training
    model.eval()
    prefix, suffix = window_sizes(model.config.block_size)
    train_rate = extracted(model, train_tokens, windows, prefix, suffix)
    val_rate = extracted(model, val_tokens, windows, prefix, suffix)
    texts = free_samples(model, enc, samples, sample_tokens, seed) if samples else []
    copied, longest = sample_copying(texts, enc.decode(train_tokens.astype(np.int64).tolist()))
    model.train(was_training)
    return {
        "prefix_tokens": prefix,
        "suffix_tokens": suffix,
        "windows": len(window_starts(len(train_tokens), prefix + suffix, windows)),  # fewer from a short text
        "train_extracted": train_rate,
        "val_extracted": val_rate,
        "sample_copied": copied,
        "longest_copied_chars": longest.chars,
        "longest_copied": {k: v for k, v in asdict(longest).items() if k != "chars"},
        "samples": texts,
    }
