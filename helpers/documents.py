"""The documents in a text file: a .txt or .md file whole, a JSON Lines line's or CSV row's text field; in chunks.

A file is read in chunks of a megabyte, so that memory holds a chunk and not the file. UTF-8 (with
or without a byte order mark) and UTF-16 with a byte order mark are told apart by their first
bytes; anything else stops at the first byte that is not UTF-8, naming the file and its offset,
unless data_encoding names the file's encoding (any Python codec: latin-1, cp1252, ...).
"""

from __future__ import annotations

import codecs
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from helpers.errors import DataError

CHUNK_BYTES = 1 << 20
TEXT_SUFFIXES = (".txt", ".md", ".jsonl", ".csv", ".tsv")  # what a folder's files are read as; others are left out
SETTING = "data_url (the form's DATA_URL, or GPT2_DATA_URL)"
BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


@dataclass(frozen=True)
class Reading:
    """How a text file becomes documents: the JSON Lines field or CSV column, and the encoding ('' : by its BOM)."""

    text_field: str = "text"
    encoding: str = ""


def chunks(name: str | Path, source: BinaryIO, encoding: str = "") -> Iterator[str]:
    """The text of a binary stream, decoded a chunk at a time; a DataError naming name where it cannot be decoded."""
    head = source.read(CHUNK_BYTES)
    if not head:
        raise DataError(name, f"is empty; {SETTING} must name a text file")
    codec = encoding or next((codec for bom, codec in BOMS if head.startswith(bom)), "utf-8")
    offset = 0  # of payload's first byte in the file
    if codec == "utf-8-sig" and head.startswith(codecs.BOM_UTF8):
        codec, head, offset = "utf-8", head[3:], 3  # the mark is no text
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    payload, first = head, True
    while True:
        held = decoder.getstate()[0] if codec.startswith("utf-8") else b""  # an unfinished character's bytes
        try:
            text = decoder.decode(payload, final=not payload)
        except UnicodeDecodeError as e:
            where = offset - len(held) + e.start
            bad = (held + payload)[e.start] if e.start < len(held) + len(payload) else 0
            what = "UTF-8 text" if codec.startswith("utf-8") else f"{codec} text"
            raise DataError(
                name,
                f"is not {what} (byte 0x{bad:02x} at offset {where}: binary?); if it is text in another "
                f"encoding, set GPT2_DATA_ENCODING to it (e.g. latin-1, cp1252); {SETTING} must name a text file",
            ) from None
        if first and "\0" in text[:8192]:  # decodes, but no text file holds NUL characters (git's test for binary)
            raise DataError(
                name,
                f"holds NUL bytes at offset {text.index(chr(0))}: binary, not text; {SETTING} must name a text file",
            )
        first = False
        if text:
            yield text
        if not payload:
            return
        offset += len(payload)
        payload = source.read(CHUNK_BYTES)


def _lines(text_chunks: Iterator[str]) -> Iterator[str]:
    """Lines with their endings, split at \\n only (a \\r or \\u2028 inside a JSON string or CSV field is no end)."""
    rest = ""
    for chunk in text_chunks:
        lines = (rest + chunk).split("\n")
        rest = lines.pop()
        for line in lines:
            yield line + "\n"
    if rest:
        yield rest


def _field(name: str | Path, where: str, value: object, field: str) -> str:
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise DataError(name, f"{where}: the field {field!r} holds {kind}, not text (GPT2_TEXT_FIELD names the text)")
    return value


def _jsonl(name: str | Path, text_chunks: Iterator[str], field: str) -> Iterator[str]:
    for number, line in enumerate(_lines(text_chunks), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as e:
            problem = f"{e.msg.removesuffix(' at')} at column {e.colno}"
            raise DataError(name, f"line {number} is not JSON: {problem}") from None
        if not isinstance(record, dict):
            raise DataError(name, f"line {number} is a JSON {type(record).__name__}, not an object with {field!r}")
        if field not in record:
            fields = ", ".join(map(repr, list(record)[:20])) or "none"
            raise DataError(
                name, f"line {number} has no field {field!r} (its fields: {fields}); GPT2_TEXT_FIELD names the text"
            )
        yield _field(name, f"line {number}", record[field], field)


def _csv(name: str | Path, text_chunks: Iterator[str], field: str, delimiter: str) -> Iterator[str]:
    csv.field_size_limit(2**31 - 1)  # a document in a cell may be long; the default limit is 128 KB
    reader = csv.reader(_lines(text_chunks), delimiter=delimiter)
    try:
        header = next(reader, [])
        if field not in header:
            columns = ", ".join(map(repr, header[:20])) or "none"
            raise DataError(
                name, f"has no column {field!r} (its columns: {columns}); GPT2_TEXT_FIELD names the text column"
            )
        column = header.index(field)
        for row in reader:
            if not row:
                continue  # a blank line
            if column >= len(row):
                raise DataError(name, f"line {reader.line_num}: {len(row)} fields, no {field!r} column")
            yield row[column]
    except csv.Error as e:
        raise DataError(name, f"line {reader.line_num}: not CSV ({e})") from None


def documents(
    name: str | Path, open_binary: Callable[[], BinaryIO], reading: Reading = Reading(), suffix: str = ""
) -> Iterator[str | None]:
    """The file's documents, each as one or more pieces of text: (chunks of) the whole file, or one per line or row.

    Yields a document's pieces one after another, then None after each document. suffix (default:
    name's) says what the file holds: .jsonl, .csv and .tsv rows; anything else is one text.
    """
    suffix = (suffix or Path(str(name)).suffix).lower()
    with open_binary() as source:
        text_chunks = chunks(name, source, reading.encoding)
        if suffix == ".jsonl":
            rows = _jsonl(name, text_chunks, reading.text_field)
        elif suffix in (".csv", ".tsv"):
            rows = _csv(name, text_chunks, reading.text_field, "\t" if suffix == ".tsv" else ",")
        else:
            yield from text_chunks  # a text file is one document, however long
            yield None
            return
        for row in rows:
            if row:
                yield row
                yield None
