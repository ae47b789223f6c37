"""`python -m helpers.bench memorization`: what the memorization measure costs, beside transformers' greedy generate.

The measure's three parts timed on one model (GPT-2 124M with random weights by default: the
cost does not depend on the weights) against tiny Shakespeare: extraction over `windows` windows
of each split (ours: generate with its KV cache, batched, greedy), the same windows continued by
transformers' GPT2LMHeadModel.generate (greedy, batched, its own cache) as the peer, the free
samples, and the search of the samples in the training text.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from helpers.commands.bench_generate import hf_twin
from helpers.data import get_encoding
from helpers.memorization import extracted, free_samples, sample_copying, window_sizes, window_starts
from helpers.model import GPT


def _timed(fn) -> tuple[object, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


@torch.no_grad()
def hf_extracted(
    twin: torch.nn.Module, tokens: np.ndarray, windows: int, prefix: int, suffix: int, batch: int
) -> float:
    """extracted's figure by transformers' greedy generate on the same windows (the peer)."""
    starts = window_starts(len(tokens), prefix + suffix, windows)
    rows = torch.from_numpy(np.stack([tokens[s : s + prefix + suffix].astype(np.int64) for s in starts]))
    hits = 0
    for part in rows.split(batch):
        out = twin.generate(
            part[:, :prefix], attention_mask=torch.ones_like(part[:, :prefix]), max_new_tokens=suffix, do_sample=False
        )
        hits += (out[:, prefix:] == part[:, prefix:]).all(dim=1).sum().item()
    return hits / len(starts)


@torch.no_grad()
def bench_memorization(
    model: GPT, train: np.ndarray, val: np.ndarray, windows: int, samples: int, sample_tokens: int, batch: int
) -> list[tuple[str, str]]:
    """The measure's parts timed, and transformers' extraction on the same windows; (name, figure) rows."""
    prefix, suffix = window_sizes(model.config.block_size)
    enc = get_encoding()
    n = 2 * windows
    ours, ours_s = _timed(lambda: [extracted(model, t, windows, prefix, suffix, batch) for t in (train, val)])
    twin = hf_twin(model)
    theirs, theirs_s = _timed(lambda: [hf_extracted(twin, t, windows, prefix, suffix, batch) for t in (train, val)])
    texts, samples_s = _timed(lambda: free_samples(model, enc, samples, sample_tokens, seed=1337))
    train_text, decode_s = _timed(lambda: enc.decode(train.astype(np.int64).tolist()))
    (copied, longest), copy_s = _timed(lambda: sample_copying(texts, train_text))
    total = ours_s + samples_s + decode_s + copy_s
    return [
        (
            f"extraction, {n} windows of {prefix}+{suffix} tokens",
            f"{ours_s:.1f} s ({ours_s / n * 1e3:.0f} ms a window), batches of {batch}, this project's generate",
        ),
        ("  the same by transformers' generate", f"{theirs_s:.1f} s ({theirs_s / n * 1e3:.0f} ms a window)"),
        ("  extracted (train, val): ours / theirs", f"{ours[0]:.3f}, {ours[1]:.3f} / {theirs[0]:.3f}, {theirs[1]:.3f}"),
        (f"free samples, {samples} x {sample_tokens} tokens", f"{samples_s:.1f} s (one batch)"),
        (
            f"copy search, {sum(map(len, texts)):,} characters in {len(train_text):,}",
            f"{decode_s + copy_s:.1f} s (decode {decode_s:.2f} s); copied {copied:.1%}, longest {longest.chars}",
        ),
        ("the whole measure", f"{total:.1f} s"),
    ]
