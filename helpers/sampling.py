"""A stream of tokens as text: whole characters as they come, ending before the first stop string.

The model's own controls (repetition penalty, temperature, top-k, top-p) act on logits in
helpers/model.py; a stop string is text, so it is found here, in what the tokens decode to. Nothing
here imports torch or the project: make_space copies this file beside model.py into a Gradio Space.
See docs/sampling.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

UNFINISHED = "\ufffd"  # what a decoder shows for the first bytes of a character whose last byte is to come


def unescape_stop(text: str) -> str:
    """A stop string as typed, `\\n` standing for a newline (a field or a command line has no other way)."""
    return text.replace("\\n", "\n")


def parse_stops(text: str) -> list[str]:
    """The stop strings of a text field: one per line (see unescape_stop); blank lines ignored."""
    return [unescape_stop(line) for line in text.splitlines() if line]


def check_stops(stop: Sequence[str]) -> list[str]:
    """stop as a list, or a ValueError if one of them is empty (it would end every text before it starts)."""
    stops = [stop] if isinstance(stop, str) else list(stop)
    if any(not isinstance(s, str) or not s for s in stops):
        raise ValueError(f"a stop string must be some text, not {next(s for s in stops if not s)!r}")
    return stops


def first_stop(text: str, start: int, stop: Sequence[str]) -> int | None:
    """Where in text the first occurrence of any stop string at or after start begins; None if there is none."""
    found = [i for i in (text.find(s, start) for s in stop) if i >= 0]
    return min(found) if found else None


def held_back(text: str, stop: Sequence[str]) -> int:
    """How many characters at text's end could be the start of a stop string (and must wait for the next token)."""
    return max((n for s in stop for n in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:n])), default=0)


def text_stream(
    prompt: Sequence[int], tokens: Iterable[int], decode: Callable[[list[int]], str], stop: Sequence[str] = ()
) -> Iterator[str]:
    """The prompt's text, then the text of tokens (ints, or one-element tensors) piece by piece as they come.

    A piece is yielded once it is sure: a character whose bytes span tokens waits for its last byte
    (the decoder shows a part as U+FFFD), and text that could be the start of a stop string waits
    until it is not. At the first stop string in the new text (the prompt's own do not count), the
    text ends before it and tokens is closed, which ends generation. Joined, the pieces are the
    whole text up to the stop string.
    """
    stop = check_stops(stop)
    ids = list(prompt)
    text = decode(ids)
    start = len(text.rstrip(UNFINISHED))  # a character the prompt leaves unfinished belongs to the new text
    yield text[:start]
    shown = start
    try:
        for token in tokens:
            ids.append(int(token))
            text = decode(ids)
            end = first_stop(text, start, stop)
            if end is not None:
                if end > shown:
                    yield text[shown:end]
                return
            if text.endswith(UNFINISHED):
                continue  # the next token finishes the character
            ready = len(text) - held_back(text[start:], stop)
            if ready > shown:
                yield text[shown:ready]
                shown = ready
        if len(text) > shown:
            yield text[shown:]  # the end: a held-back start of a stop string, or an unfinished character
    finally:
        close = getattr(tokens, "close", None)
        if close is not None:
            close()  # a generator: generation stops here, not at the next garbage collection
