"""GPT-2's tokens of a stream of documents: cut where the tokens cannot change, encoded on all cores, in order.

Memory holds a few pieces of text and their tokens, never the corpus: the text comes in chunks,
is cut into pieces of about PIECE_CHARS characters, and the pieces are encoded by tiktoken on a
thread per core, this one included (its batch encoding's way, with encode_to_numpy, which skips
a Python list of ints per token), a few pieces ahead of the writer. A cut is made only before a space that follows a
character other than whitespace: no pre-token of GPT-2's pattern runs across such a point, so
the pieces' tokens are those of the whole text (tests/test_token_stream.py checks it).
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np
import tiktoken

PIECE_CHARS = 1 << 18  # 256 K characters: 64 K tokens or so, enough to keep a thread busy
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
    pieces: Iterable[tuple[int, str | None]], enc: tiktoken.Encoding, threads: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """(split, uint16 tokens) of each piece, in order, encoded on threads threads (default: every core) ahead of use.

    The calling thread is one of them: it takes every threads-th piece itself (tiktoken spends
    about a third more CPU time on a text in any other thread, so one thread means no pool at all).
    """
    threads = threads or os.cpu_count() or 1
    eot = np.array([EOT], np.uint16)

    def encode(text: str | None) -> np.ndarray:
        if text is None:
            return eot
        if not hasattr(enc, "encode_to_numpy"):  # tiktoken before 0.9
            return np.array(enc.encode_ordinary(text), dtype=np.uint16)
        return enc.encode_to_numpy(text, disallowed_special=()).astype(np.uint16)  # = encode_ordinary; ids < 2**16

    def done(job: Future | str | None) -> np.ndarray:
        return job.result() if isinstance(job, Future) else encode(job)  # the calling thread's own piece: now

    with ThreadPoolExecutor(max(1, threads - 1)) as pool:
        window: collections.deque = collections.deque()  # (split, a Future, or the text this thread encodes)
        for n, (split, text) in enumerate(pieces):
            window.append((split, pool.submit(encode, text) if n % threads else text))
            if len(window) > 2 * threads:  # enough ahead to keep every thread busy, no more
                split, job = window.popleft()
                yield split, done(job)
        while window:
            split, job = window.popleft()
            yield split, done(job)
