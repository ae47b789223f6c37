"""GPT-2's tokens of a stream of documents: cut where the tokens cannot change, encoded on all cores, in order.

Memory holds a few pieces of text and their tokens, never the corpus: the text comes in chunks,
is cut into pieces of about PIECE_CHARS characters, and the pieces are encoded by tiktoken in a
worker process per core (with encode_to_numpy, which skips a Python list of ints per token), a
few pieces ahead of the writer. A cut is made only before a space that follows a
character other than whitespace: no pre-token of GPT-2's pattern runs across such a point, so
the pieces' tokens are those of the whole text (tests/test_corpus.py checks it).
"""

from __future__ import annotations

import collections
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Iterable, Iterator

import numpy as np
import tiktoken

PIECE_CHARS = 1 << 18  # 256 K characters: 64 K tokens or so, enough to keep a worker busy
EOT = 50256  # <|endoftext|>, between two documents, as GPT-2 was trained
TRAIN, VAL = 0, 1


def safe_cut(text: str, limit: int) -> int:
    """The last point at most limit where cutting text cannot change its tokens, else the first beyond; 0: none."""
    p = text.rfind(" ", 1, limit + 1)
    while p > 0 and text[p - 1].isspace():
        p = text.rfind(" ", 1, p)
    if p > 0:
        return p
    p = text.find(" ", limit)
    while p > 0 and text[p - 1].isspace():
        p = text.find(" ", p + 1)
    return max(p, 0)


def _cut(text: str, piece_chars: int) -> tuple[list[str], str]:
    """text as pieces of about piece_chars, cut at safe points, and the rest after the last cut (kept for more text)."""
    pieces = []
    while len(text) > piece_chars:
        p = safe_cut(text, piece_chars)
        if p == 0:
            break
        pieces.append(text[:p])
        text = text[p:]
    return pieces, text


def split_pieces(
    items: Iterable[str | None], cut: int, piece_chars: int = PIECE_CHARS
) -> Iterator[tuple[int, str | None]]:
    """(TRAIN or VAL, a piece of text, or None for <|endoftext|>) from documents' text, in order.

    items are documents' text in chunks, None after each document. The first cut characters are
    the training split, the rest the validation split; documents are separated by <|endoftext|>
    within a split (a split starts and ends without one), and a document cut by the split is
    encoded as two texts, as a text cut by characters always was.
    """
    seen, split, rest, in_doc, started = 0, TRAIN, "", False, [False, False]
    for item in items:
        if item is None:  # a document ends: its last piece is complete
            if rest:
                yield split, rest
            rest, in_doc = "", False
            continue
        if not item:
            continue
        if not in_doc:  # a document starts, in the split its first character falls in
            split = TRAIN if seen < cut else VAL
            if started[split]:
                yield split, None
            started[split], in_doc = True, True
        text = rest + item
        if split == TRAIN and seen + len(item) > cut:  # the split runs through this chunk: a forced cut
            head = len(rest) + cut - seen
            pieces, last = _cut(text[:head], piece_chars)
            for piece in pieces + [last] * bool(last):
                yield TRAIN, piece
            split, started[VAL], text = VAL, True, text[head:]
        seen += len(item)
        pieces, rest = _cut(text, piece_chars)
        for piece in pieces:
            yield split, piece
    if rest:
        yield split, rest


def encode_pieces(
    pieces: Iterable[tuple[int, str | None]], enc: tiktoken.Encoding, workers: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """(split, uint16 tokens) of each piece, in order, encoded in workers processes (default: every core) ahead of use.

    Processes, not threads: tiktoken holds the GIL while it encodes, so two threads are no faster
    than one (docs/data.md). The workers are forked, as PyTorch's DataLoader forks its workers on
    Linux: they inherit the loaded encoding and run tiktoken alone. One worker, or a system that
    cannot fork, encodes in this process.
    """
    workers = workers or os.cpu_count() or 1
    if workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
        for split, text in pieces:
            yield split, _encode(enc, text)
        return
    fork = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=fork, initializer=_start_worker, initargs=(enc,)) as pool:
        window: collections.deque = collections.deque()  # (split, the Future of its tokens)
        for split, text in pieces:
            window.append((split, pool.submit(_encode_in_worker, text)))
            if len(window) > 2 * workers:  # enough ahead to keep every worker busy, no more
                split, job = window.popleft()
                yield split, job.result()
        while window:
            split, job = window.popleft()
            yield split, job.result()


def _encode(enc: tiktoken.Encoding, text: str | None) -> np.ndarray:
    """A piece's tokens as uint16 (GPT-2's ids are below 2**16); <|endoftext|> for None."""
    if text is None:
        return np.array([EOT], np.uint16)
    if not hasattr(enc, "encode_to_numpy"):  # tiktoken before 0.9
        return np.array(enc.encode_ordinary(text), dtype=np.uint16)
    return enc.encode_to_numpy(text, disallowed_special=()).astype(np.uint16)  # = encode_ordinary, no list of ints


_worker_enc: tiktoken.Encoding | None = None  # the encoding a worker process uses


def _start_worker(enc: tiktoken.Encoding) -> None:
    global _worker_enc
    _worker_enc = enc


def _encode_in_worker(text: str | None) -> np.ndarray:
    return _encode(_worker_enc, text)
