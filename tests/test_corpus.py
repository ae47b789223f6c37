"""Text in any shape (issue 32): a folder, a glob, JSON Lines and CSV documents, encodings, bad input in one line,
and tokens streamed in pieces that are exactly those of the whole text."""

import io
import json
import os
from functools import partial

import numpy as np
import pytest

from conftest import run_script
from helpers import documents as documents_module
from helpers.checkpoints.runs import run_folder
from helpers.config import make_config
from helpers.data import data_identity, get_encoding, load_splits, load_tokens, prepare_data, read_meta
from helpers.data_source import data_folder, data_label
from helpers.documents import Reading, documents
from helpers.errors import DataError
from helpers.token_stream import EOT, encode_pieces, split_pieces

SONNET = (
    "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n"
    "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date.\n"
)
LINE = SONNET.replace("\n", " ").strip()  # a TSV cell


def encode(text):
    return get_encoding().encode_ordinary(text)


def streamed(items, cut, piece_chars, enc=None):
    """The (train, val) token lists of split_pieces + encode_pieces, in two worker processes."""
    out = ([], [])
    for split, tokens in encode_pieces(split_pieces(items, cut, piece_chars), enc or get_encoding(), workers=2):
        out[split].extend(tokens.tolist())
    return out


def test_streamed_pieces_give_the_tokens_of_the_whole_text(data_dir):
    """Tiny Shakespeare cut into pieces of ~500 characters, arriving in chunks of 7,777: nanoGPT's one-shot tokens."""
    text = (data_dir / "input.txt").read_text()
    cut = int(len(text) * 0.9)
    chunks = [text[i : i + 7777] for i in range(0, len(text), 7777)] + [None]
    train, val = streamed(chunks, cut, piece_chars=500)
    assert train == encode(text[:cut]) and val == encode(text[cut:])
    assert train == load_tokens(data_dir, "train").tolist()


def test_awkward_text_is_cut_only_where_the_tokens_cannot_change():
    """Runs of spaces, tabs, newlines, numbers, accents, CJK and stretches with no space at all."""
    rng = np.random.default_rng(0)
    words = ["  ", " ", "\n", "\n\n", "\t", " 12345", "naïve", "日本語", "'s", "'ll", "x" * 40, "!!", " \u00a0", "\r\n"]
    text = "".join(rng.choice(words, 20_000))
    for piece_chars in (1, 7, 64):
        train, val = streamed([text, None], len(text), piece_chars)
        assert train == encode(text) and val == []

    class OldTiktoken:  # before 0.9, without encode_to_numpy
        encode_ordinary = staticmethod(get_encoding().encode_ordinary)

    assert streamed([text, None], len(text) // 2, 64, OldTiktoken()) == (
        encode(text[: len(text) // 2]),
        encode(text[len(text) // 2 :]),
    )


def write_folder(root):
    """Three .txt/.md documents, four JSON Lines rows, four CSV rows and three TSV rows: 13 documents, in path order."""
    (root / "b").mkdir(parents=True)
    (root / "a.txt").write_text(SONNET)
    (root / "a.md").write_text("# Notes\n\n" + SONNET.upper())
    (root / "b" / "c.jsonl").write_text(
        "\n".join(json.dumps({"id": i, "text": f"Row {i}: " + SONNET[i:]}) for i in range(4)) + "\n\n"
    )
    (root / "b" / "d.csv").write_text(
        "id,text\n" + "".join(f'{i},"Line {i}, ""quoted"":\n{SONNET}"\n' for i in range(4))
    )
    (root / "e.tsv").write_text("text\tn\n" + "".join(f"Tab {i} {LINE}\t{i}\n" for i in range(3)))
    (root / "skip.pdf").write_bytes(b"%PDF")  # not a text file: left out
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.txt").write_text("hidden")
    docs = [SONNET, "# Notes\n\n" + SONNET.upper()]
    docs += [f"Row {i}: " + SONNET[i:] for i in range(4)] + [f'Line {i}, "quoted":\n{SONNET}' for i in range(4)]
    docs += [f"Tab {i} {LINE}" for i in range(3)]
    # path order: a.md, a.txt, b/c.jsonl, b/d.csv, e.tsv
    return [docs[1], docs[0]] + docs[2:]


def joined(docs):
    tokens = []
    for i, doc in enumerate(docs):
        tokens += ([EOT] if i else []) + encode(doc)
    return tokens


def test_a_folder_is_documents_separated_by_endoftext_with_the_last_tenth_for_validation(tmp_path):
    docs = write_folder(tmp_path / "poems")
    folder = data_folder(tmp_path / "data", str(tmp_path / "poems"))
    assert folder.name.startswith("poems-")
    meta = prepare_data(folder, str(tmp_path / "poems"))
    assert (meta["documents"], meta["split"], meta["text"]) == (13, "documents", str(tmp_path / "poems"))
    assert [path for path, _ in meta["files"]] == ["a.md", "a.txt", "b/c.jsonl", "b/d.csv", "e.tsv"]
    assert load_tokens(folder, "train").tolist() == joined(docs[:12])  # round(13 / 10) = 1 document for validation
    assert load_tokens(folder, "val").tolist() == joined(docs[12:])
    assert not (folder / "input.txt").exists()  # a folder is read where it is
    assert prepare_data(folder, str(tmp_path / "poems"))["reused"]


def test_a_few_documents_are_split_by_characters_and_a_glob_names_files(tmp_path):
    (tmp_path / "t").mkdir()
    for name in ("one", "two"):
        (tmp_path / "t" / f"{name}.txt").write_text(name.upper() + " " + SONNET * 3)
    (tmp_path / "t" / "other.md").write_text("left out by the glob")
    pattern = str(tmp_path / "t" / "*.txt")
    assert data_label(pattern).startswith("t-")
    meta = prepare_data(tmp_path / "data", pattern)
    assert (meta["documents"], meta["split"]) == (2, "characters")
    text = "ONE " + SONNET * 3 + "TWO " + SONNET * 3  # characters, then <|endoftext|> between the documents
    cut = int(len(text) * 0.9)
    one = len("ONE " + SONNET * 3)
    assert load_tokens(tmp_path / "data", "train").tolist() == encode(text[:one]) + [EOT] + encode(text[one:cut])
    assert load_tokens(tmp_path / "data", "val").tolist() == encode(text[cut:])


def test_a_folders_identity_covers_each_files_path_and_bytes(tmp_path):
    write_folder(tmp_path / "poems")
    url = str(tmp_path / "poems")
    labels = [data_label(url)]
    (tmp_path / "poems" / "new.txt").write_text("added")
    labels.append(data_label(url))
    (tmp_path / "poems" / "new.txt").rename(tmp_path / "poems" / "renamed.txt")
    labels.append(data_label(url))
    (tmp_path / "poems" / "renamed.txt").write_text("edited")
    labels.append(data_label(url))
    (tmp_path / "poems" / "renamed.txt").unlink()
    assert data_label(url) == labels[0] and len(set(labels)) == 4
    assert data_label(url, Reading(text_field="body")) != labels[0]  # another field: another text
    cfg = make_config("ci", env={"GPT2_DATA_URL": url})
    assert run_folder(cfg).startswith("ci-") and run_folder(cfg).endswith(f"-{labels[0]}")


@pytest.mark.parametrize("bom", ["utf-8-sig", "utf-16", "utf-16-be"])
def test_utf8_with_a_bom_and_utf16_with_a_bom_read_as_utf8(tmp_path, bom):
    text = "Naïve café — " + SONNET
    payload = text.encode(bom) if bom != "utf-16-be" else b"\xfe\xff" + text.encode("utf-16-be")
    (tmp_path / "mine.txt").write_bytes(payload)
    meta = prepare_data(tmp_path / "data", str(tmp_path / "mine.txt"))
    cut = int(len(text) * 0.9)
    assert load_tokens(tmp_path / "data", "train").tolist() == encode(text[:cut])
    assert meta["val_tokens"] == len(encode(text[cut:]))


def test_latin1_stops_naming_the_file_and_offset_and_reads_with_its_encoding(tmp_path, monkeypatch):
    """The offset is the file's, also past the first chunk (read here in chunks of 64 bytes)."""
    monkeypatch.setattr(documents_module, "CHUNK_BYTES", 64)
    text = "é" * 50 + SONNET * 2 + "Ce naïf café.\n"  # UTF-8 until the Latin-1 line
    source = tmp_path / "mixed.txt"
    source.write_bytes(("é" * 50 + SONNET * 2).encode() + "Ce naïf café.\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        prepare_data(tmp_path / "data", str(source))
    offset = len(("é" * 50 + SONNET * 2 + "Ce na").encode())
    assert str(info.value).startswith(f"{source}: is not UTF-8 text (byte 0xef at offset {offset}: binary?)")
    assert "GPT2_DATA_ENCODING" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "data").exists()
    latin = tmp_path / "latin.txt"
    latin.write_bytes(text.encode("latin-1"))
    meta = prepare_data(tmp_path / "data", str(latin), Reading(encoding="latin-1"))
    assert load_tokens(tmp_path / "data", "val").tolist() == encode(text[int(len(text) * 0.9) :])
    assert meta["reading"] == {"text_field": "text", "encoding": "latin-1"}


def test_a_utf8_character_across_chunks_is_read_whole(monkeypatch):
    monkeypatch.setattr(documents_module, "CHUNK_BYTES", 3)
    text = "a日本語é🙂b" * 5
    assert "".join(p for p in documents("x.txt", lambda: io.BytesIO(text.encode())) if p) == text


def test_a_jsonl_field_and_csv_column_named_by_text_field(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"body": "Hello there"}) + "\n")
    (tmp_path / "d.csv").write_text("body\nGeneral Kenobi\n")
    reading = Reading(text_field="body")
    paths = [tmp_path / "c.jsonl", tmp_path / "d.csv"]
    got = [piece for path in paths for piece in documents(path, partial(open, path, "rb"), reading)]
    assert got == ["Hello there", None, "General Kenobi", None]


def one_line(error):
    assert "\n" not in str(error), str(error)
    return str(error)


@pytest.mark.parametrize(
    "files,where,problem",
    [
        ({}, "", "is a folder with nothing in it"),
        ({"a.pdf": b"%PDF", "b.docx": b"PK"}, "", "is a folder with no .txt, .md, .jsonl, .csv, .tsv file in it"),
        ({"x.jsonl": b'{"text": "ok"}\n\n{"text": "broken\n'}, "x.jsonl", "line 3 is not JSON: Unterminated string"),
        ({"x.jsonl": b'["text"]\n'}, "x.jsonl", "line 1 is a JSON list, not an object with 'text'"),
        ({"x.jsonl": b'{"body": "x", "id": 1}\n'}, "x.jsonl", "line 1 has no field 'text' (its fields: 'body', 'id')"),
        ({"x.jsonl": b'{"text": 5}\n'}, "x.jsonl", "line 1: the field 'text' holds int, not text"),
        ({"x.jsonl": b'{"text": null}\n'}, "x.jsonl", "line 1: the field 'text' holds null, not text"),
        ({"y.csv": b"id,body\n1,hi\n"}, "y.csv", "has no column 'text' (its columns: 'id', 'body')"),
        ({"y.csv": b"id,text\n1\n"}, "y.csv", "line 2: 1 fields, no 'text' column"),
        ({"e.txt": b"", "f.txt": b""}, "", "holds no text (every file is empty)"),
    ],
)
def test_bad_input_stops_in_one_line_naming_the_file_and_writes_nothing(tmp_path, files, where, problem):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, payload in files.items():
        (folder / name).write_bytes(payload)
    with pytest.raises(DataError) as info:
        prepare_data(tmp_path / "data", str(folder))
    assert one_line(info.value).startswith(f"{folder / where if where else folder}: {problem}")
    assert not (tmp_path / "data").exists()


def test_a_corpus_too_small_for_a_window_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "s.txt").write_text(SONNET * 4)
    with pytest.raises(DataError) as info:
        prepare_data(tmp_path / "data", str(tmp_path / "s.txt"), block_size=1024)
    assert one_line(info.value).startswith(f"{tmp_path / 'data' / 'train.bin'}: ")
    assert "too few for one window of block_size + 1 = 1025" in str(info.value)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
    meta = prepare_data(tmp_path / "data", str(tmp_path / "s.txt"), block_size=8)
    assert load_splits(tmp_path / "data", 8)[1].size == meta["val_tokens"]


def test_other_reading_settings_remake_the_tokens(tmp_path, capsys):
    (tmp_path / "x.jsonl").write_text(
        "".join(json.dumps({"text": f"a{i} " * 30, "body": f"b{i} " * 30}) + "\n" for i in range(3))
    )
    first = prepare_data(tmp_path / "data", str(tmp_path / "x.jsonl"))
    assert (tmp_path / "data" / "input.jsonl").read_bytes() == (tmp_path / "x.jsonl").read_bytes()
    other = prepare_data(tmp_path / "data", str(tmp_path / "x.jsonl"), Reading(text_field="body"))
    assert "the text was read otherwise" in capsys.readouterr().out
    assert data_identity(first)["train_sha256"] != data_identity(other)["train_sha256"]
    assert read_meta(tmp_path / "data")["reading"]["text_field"] == "body"


@pytest.mark.slow
def test_the_notebook_trains_on_a_folder_of_txt_jsonl_and_csv_in_latin1(tmp_path):
    """A Latin-1 file beside a .jsonl and a .csv stops the run in one line; with GPT2_DATA_ENCODING it trains."""
    folder = tmp_path / "corpus"
    docs = write_folder(folder)
    (folder / "a.txt").write_bytes(("Ce naïf café. " + SONNET).encode("latin-1"))
    refused = run_script(tmp_path / "ck1", check=False, data_url=folder, max_steps=4)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1, refused.stderr
    assert lines[0].startswith(f"error: {folder / 'a.txt'}: is not UTF-8 text (byte 0xef at offset 5: binary?)")
    run = run_script(tmp_path / "ck2", data_url=folder, data_encoding="latin-1", max_steps=4)
    data = data_folder(os.environ["GPT2_DATA_DIR"], str(folder), Reading(encoding="latin-1"))
    meta = read_meta(data)
    assert f"{folder}: train {meta['train_tokens']:,} tokens, val {meta['val_tokens']:,} tokens, 13 documents" in (
        run.stdout
    )
    assert load_tokens(data, "val").tolist() == joined(docs[12:])
    assert list(load_tokens(data, "train")).count(EOT) == 11


def test_the_prepare_command_makes_the_files_a_run_finds_and_stops_bad_input_in_one_line(tmp_path, capsys):
    from helpers.commands.prepare import main

    write_folder(tmp_path / "poems")
    assert main([str(tmp_path / "poems"), str(tmp_path / "data")]) == 0
    folder = data_folder(tmp_path / "data", str(tmp_path / "poems"))
    meta = read_meta(folder)
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path / 'poems'}: train {meta['train_tokens']:,} tokens") and str(folder) in out
    assert main([str(tmp_path / "poems"), str(tmp_path / "data")]) == 0 and "(reused)" in capsys.readouterr().out
    (tmp_path / "bad.csv").write_text("id,body\n1,hi\n")
    assert main([str(tmp_path / "bad.csv"), str(tmp_path / "other")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'bad.csv'}: has no column 'text' (its columns: 'id', 'body'); " + (
        "GPT2_TEXT_FIELD names the text column\n"
    )
    assert main([str(tmp_path / "bad.csv"), str(tmp_path / "other"), "--text-field", "body"]) == 0
    assert main([str(tmp_path / "bad.csv"), "--encoding", "utf-9"]) == 1
    assert "GPT2_DATA_ENCODING='utf-9': not a text encoding" in capsys.readouterr().err


def test_a_folder_edited_after_its_token_files_were_made_is_tokenised_again(tmp_path, capsys):
    """One data folder, the text edited under it (as when data_dir is given by hand): noticed by the files' sha256s."""
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "only.txt").write_text(SONNET * 3)
    (tmp_path / "t" / "empty.md").write_text("")
    first = prepare_data(tmp_path / "data", str(tmp_path / "t"))
    assert first["text"] == str(tmp_path / "t") and first["documents"] == 1
    (tmp_path / "t" / "more.txt").write_text(SONNET.upper() * 3)
    again = prepare_data(tmp_path / "data", str(tmp_path / "t"))
    assert "the text has changed since the token files were made" in capsys.readouterr().out
    assert again["documents"] == 2 and again["source_sha256"] != first["source_sha256"]
    assert [name for name, _ in again["files"]] == ["empty.md", "more.txt", "only.txt"]


def test_a_full_disk_while_writing_the_tokens_leaves_the_old_files_and_says_so_in_one_line(tmp_path, monkeypatch):
    import small_disk

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.txt").write_text(SONNET * 20)
    data = tmp_path / "data"
    prepare_data(data, str(tmp_path / "t"))
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    (tmp_path / "t" / "b.txt").write_text(SONNET.upper() * 200)  # another text, with more tokens than fit
    small_disk.install(data, sum(map(len, before.values())) + 1000, monkeypatch)
    with pytest.raises(DataError) as info:
        prepare_data(data, str(tmp_path / "t"))
    assert one_line(info.value).startswith(f"{data}: cannot write the token files (No space left on device)")
    assert "GPT2_DATA_DIR" in str(info.value)
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before  # no temporary file left either


def test_an_interrupt_while_tokenising_leaves_the_old_files(tmp_path, monkeypatch):
    """Ctrl-C half-way through the pieces: the old token files and meta.json as they were, no temporary file left."""
    import helpers.data

    (tmp_path / "a.txt").write_text(SONNET * 20)
    data = tmp_path / "data"
    prepare_data(data, str(tmp_path / "a.txt"))
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    (tmp_path / "a.txt").write_text(SONNET.upper() * 20)

    def interrupted(items, cut, piece_chars=64):
        for n, piece in enumerate(split_pieces(items, cut, piece_chars)):
            if n == 5:
                raise KeyboardInterrupt
            yield piece

    monkeypatch.setattr(helpers.data, "split_pieces", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(data, str(tmp_path / "a.txt"))
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on localhost: its URL, until the test ends."""
    import functools
    import http.server
    import threading

    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_jsonl_url_is_downloaded_once_and_read_as_documents(served, tmp_path):
    root, base = served
    rows = [{"text": f"Document {i}: {LINE}"} for i in range(12)]
    (root / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (root / "bad.csv").write_text("id,body\n1,hi\n")
    url = f"{base}/corpus.jsonl"
    folder = data_folder(tmp_path / "data", url)
    meta = prepare_data(folder, url)
    assert (folder / "input.jsonl").read_bytes() == (root / "corpus.jsonl").read_bytes()
    assert (meta["documents"], meta["text"]) == (12, str(folder / "input.jsonl"))
    assert load_tokens(folder, "val").tolist() == encode(rows[11]["text"])
    (root / "corpus.jsonl").unlink()  # fetched once: the copy is what is read from now on
    assert prepare_data(folder, url)["reused"]
    with pytest.raises(DataError, match=rf"^{base}/bad.csv: has no column 'text'"):
        prepare_data(tmp_path / "other", f"{base}/bad.csv")
    assert not (tmp_path / "other").exists()
