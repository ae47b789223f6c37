"""The data a run trains on (issue 19): a token cache checked by hash, texts that cannot be used
refused in one line naming the file or the URL, and a run that never resumes on other text."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import run_script
from helpers.data import check_same_data, data_identity, load_splits, load_tokens, prepare_data, read_meta
from helpers.data_source import SHAKESPEARE_URL, data_folder, data_label
from helpers.errors import CheckpointError, DataError


@pytest.fixture
def own_text(data_dir, tmp_path):
    """A text that is not tiny Shakespeare (the start of the plays, upper-cased), small enough to tokenise at once."""
    path = tmp_path / "sonnets.txt"
    path.write_text((data_dir / "input.txt").read_text()[:20_000].upper())
    return path


def one_line(error):
    assert "\n" not in str(error), str(error)
    return str(error)


def test_a_damaged_token_cache_of_the_right_size_is_noticed_and_remade(data_dir, tmp_path, capsys):
    """Item 3: zeroing 300 KB of train.bin kept its size, and the run said "(reused)" and trained on it."""
    for name in ("input.txt", "train.bin", "val.bin", "meta.json"):
        shutil.copy(data_dir / name, tmp_path / name)
    good = (tmp_path / "train.bin").read_bytes()
    with open(tmp_path / "train.bin", "r+b") as f:
        f.write(bytes(300_000))
    meta = prepare_data(tmp_path, os.environ.get("GPT2_DATA_URL", SHAKESPEARE_URL))
    assert not meta["reused"]
    assert capsys.readouterr().out.splitlines() == [
        f"{tmp_path}: train.bin does not match the sha256 in meta.json (changed or damaged): "
        "making the token files again"
    ]
    assert (tmp_path / "train.bin").read_bytes() == good
    assert prepare_data(tmp_path, os.environ.get("GPT2_DATA_URL", SHAKESPEARE_URL))["reused"]


@pytest.mark.parametrize(
    "damage,reason",
    [
        ("random train.bin", "train.bin does not match the sha256 in meta.json"),  # was an IndexError in training
        ("broken meta.json", "meta.json is not valid JSON (JSONDecodeError: "),  # was a JSONDecodeError
        ("meta.json a list", "meta.json does not hold a JSON object"),
        ("meta.json of an older version", "meta.json records no sha256 of train.bin (made by an older version)"),
        ("val.bin deleted", "val.bin is missing"),
    ],
)
def test_cache_damage_is_reported_in_one_line_and_repaired(own_text, tmp_path, damage, reason, capsys):
    folder = tmp_path / "data"
    first = prepare_data(folder, str(own_text))
    tokens = {split: load_tokens(folder, split).tolist() for split in ("train", "val")}
    if damage == "random train.bin":
        (folder / "train.bin").write_bytes(os.urandom((folder / "train.bin").stat().st_size))
    elif damage == "broken meta.json":
        (folder / "meta.json").write_text('{"source_sha256": ')
    elif damage == "meta.json a list":
        (folder / "meta.json").write_text("[1, 2]")
    elif damage == "meta.json of an older version":
        old = {k: v for k, v in first.items() if not k.endswith("_sha256") or k == "source_sha256"}
        (folder / "meta.json").write_text(json.dumps(old))
    else:
        (folder / "val.bin").unlink()
    capsys.readouterr()
    again = prepare_data(folder, str(own_text))
    reports = capsys.readouterr().out.splitlines()
    assert len(reports) == 1 and reports[0].startswith(f"{folder}: {reason}") and "\n" not in reports[0]
    assert not again["reused"] and data_identity(again) == data_identity(first)
    assert {split: load_tokens(folder, split).tolist() for split in ("train", "val")} == tokens


@pytest.mark.parametrize(
    "payload,problem",
    [
        (b"", "is empty"),  # was "cannot mmap an empty file"
        ("naïve".encode("latin-1"), "is not UTF-8 text (byte 0xef at offset 2: binary?)"),  # was a UnicodeDecodeError
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "is not UTF-8 text (byte 0x89 at offset 0"),
        (b"text\0\0\0\0more", "holds NUL bytes at offset 4: binary, not text"),
    ],
)
def test_a_text_that_cannot_be_trained_on_is_refused_naming_it(tmp_path, payload, problem):
    source = tmp_path / "mine.txt"
    source.write_bytes(payload)
    with pytest.raises(DataError) as info:
        prepare_data(tmp_path / "data", str(source))
    assert one_line(info.value).startswith(f"{source}: {problem}") and "DATA_URL" in str(info.value)
    assert not (tmp_path / "data").exists()  # nothing cached


def test_a_text_too_short_for_one_window_is_refused_naming_the_split(tmp_path):
    """A tiny input.txt once failed in training with "stack expects a non-empty TensorList"."""
    source = tmp_path / "tiny.txt"
    source.write_text("To be, or not to be, that is the question. " * 20)
    folder = tmp_path / "data"
    prepare_data(folder, str(source))
    n_train, n_val = len(load_tokens(folder, "train")), len(load_tokens(folder, "val"))
    with pytest.raises(DataError) as info:  # one window is block_size + 1 tokens
        load_splits(folder, block_size=n_val)
    assert one_line(info.value).startswith(
        f"{folder / 'val.bin'}: {n_val} tokens, too few for one window of "
        f"block_size + 1 = {n_val + 1} (val is the last 10% of {folder / 'input.txt'})"
    )
    assert "GPT2_BLOCK_SIZE" in str(info.value)
    train, val = load_splits(folder, block_size=n_val - 1)
    assert (len(train), len(val)) == (n_train, n_val)
    with pytest.raises(DataError, match=rf"train.bin: with train_fraction 0.1, {n_train // 10} tokens, too few"):
        load_splits(folder, block_size=n_val - 1, train_fraction=0.1)


def test_a_text_of_one_character_leaves_an_empty_split_refused_by_name(tmp_path):
    """Its training split is 0 tokens: an empty train.bin, which numpy cannot memory-map."""
    (tmp_path / "one.txt").write_text("A")
    prepare_data(tmp_path / "data", str(tmp_path / "one.txt"))
    with pytest.raises(DataError, match=rf"^{tmp_path / 'data' / 'train.bin'}: 0 tokens, too few for one window"):
        load_splits(tmp_path / "data", block_size=8)


def test_token_ids_beyond_gpt2s_vocabulary_are_refused_even_with_a_matching_meta_json(own_text, tmp_path):
    """Random bytes as train.bin, with a meta.json written to match them: once an IndexError inside the model."""
    folder = tmp_path / "data"
    prepare_data(folder, str(own_text))
    noise = np.random.default_rng(0).integers(0, 2**16, 5000, dtype=np.uint16).tobytes()
    (folder / "train.bin").write_bytes(noise)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(dict(meta, train_sha256=hashlib.sha256(noise).hexdigest())))
    assert prepare_data(folder, str(own_text))["reused"]  # the hashes agree: nothing to tell
    with pytest.raises(DataError) as info:
        load_splits(folder, block_size=32)
    assert one_line(info.value).startswith(f"{folder / 'train.bin'}: holds token id ")
    assert "beyond GPT-2's 50,257: not a token file of this project" in str(info.value)


def test_an_empty_input_txt_in_shakespeares_folder_is_fetched_again(data_dir, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "input.txt").write_bytes(b"")  # nothing in it to lose
    meta = prepare_data(folder, os.environ.get("GPT2_DATA_URL", SHAKESPEARE_URL))
    assert (folder / "input.txt").read_bytes() == (data_dir / "input.txt").read_bytes()
    assert data_identity(meta) == data_identity(read_meta(data_dir))


@pytest.mark.parametrize(
    "url,problem",
    [
        ("https://127.0.0.1:9/input.txt", "could not download (URLError: "),  # nothing listens on port 9
        ("http://[::1/input.txt", "is not a valid URL or path (ValueError: Invalid IPv6 URL)"),
    ],
)
def test_an_unreachable_url_is_named_in_the_error(tmp_path, url, problem):
    with pytest.raises(DataError) as info:
        prepare_data(tmp_path, url)
    assert one_line(info.value).startswith(f"{url}: {problem}")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_file_or_a_folder_as_data_url(tmp_path):
    with pytest.raises(DataError, match=rf"^{tmp_path / 'nope.txt'}: no such file; data_url"):
        data_label(str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match=rf"^{tmp_path}: is a folder"):
        prepare_data(tmp_path / "data", tmp_path.as_uri())


def test_shakespeare_folder_holding_another_text_is_refused_untouched(own_text, tmp_path):
    """An input.txt of another text in Shakespeare's folder: once used without a word; never overwritten."""
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(own_text, folder / "input.txt")
    with pytest.raises(DataError) as info:
        prepare_data(folder, os.environ.get("GPT2_DATA_URL", SHAKESPEARE_URL))
    assert one_line(info.value).startswith(f"{folder / 'input.txt'}: is not tiny Shakespeare")
    assert (folder / "input.txt").read_bytes() == own_text.read_bytes()
    assert sorted(folder.iterdir()) == [folder / "input.txt"]


def test_each_text_has_its_own_label_and_folders(data_dir, own_text, tmp_path):
    """Tiny Shakespeare by any address is data/ itself; another text gets <name>-<8 hex of its bytes>."""
    assert data_label(SHAKESPEARE_URL) == data_label(str(data_dir / "input.txt")) == ""
    assert data_folder(tmp_path, (data_dir / "input.txt").as_uri()) == tmp_path
    label = data_label(str(own_text))
    assert label.startswith("sonnets-") and len(label) == len("sonnets-") + 8
    assert data_label(own_text.as_uri()) == label  # a path or file://: the same text, the same label
    copy = tmp_path / "copy" / "sonnets.txt"
    copy.parent.mkdir()
    copy.write_bytes(own_text.read_bytes() + b"\nMORE.\n")
    assert data_label(str(copy)) not in (label, "")  # an edited text is another text
    remote = data_label("https://example.com/texts/my%20poems.txt")
    assert remote.startswith("my-20poems-") and remote != data_label("https://example.org/texts/my%20poems.txt")


def test_a_file_uploaded_to_the_working_directory_is_found_by_its_name(own_text, tmp_path, monkeypatch):
    """Colab's file pane uploads to /content, the notebook's working directory: DATA_URL = "sonnets.txt"."""
    monkeypatch.chdir(own_text.parent)
    folder = data_folder(tmp_path / "data", "sonnets.txt")
    assert folder == tmp_path / "data" / data_label(str(own_text))
    meta = prepare_data(folder, "sonnets.txt")
    assert (folder / "input.txt").read_bytes() == own_text.read_bytes() and meta["train_tokens"] > 0


def checkpoint_on(identity, **config):
    return {"step": 5, "config": {"data_url": "https://example.com/a.txt", **config}, "data": identity}


def test_resuming_on_other_data_is_refused_with_both_hashes_and_the_ways_out(data_dir, own_text, tmp_path):
    ours = data_identity(read_meta(data_dir))
    theirs = data_identity(prepare_data(tmp_path / "other", str(own_text)))
    check_same_data("model_step_5.pt", checkpoint_on(ours), ours, "here")  # the same data: resumes
    with pytest.raises(CheckpointError) as info:
        check_same_data("ck/model_step_5.pt", checkpoint_on(theirs), ours, SHAKESPEARE_URL)
    message = one_line(info.value)
    assert message.startswith(
        f"ck/model_step_5.pt: made on other data: text_sha256 {theirs['text_sha256'][:16]} "
        f"(data_url https://example.com/a.txt), this run's {ours['text_sha256'][:16]} "
        f"(data_url {SHAKESPEARE_URL})"
    )
    assert "another checkpoint folder (GPT2_CHECKPOINT_DIR" in message
    with pytest.raises(CheckpointError, match="start over with GPT2_RESUME=never"):
        check_same_data("x.pt", checkpoint_on(theirs), ours, "here", resume="x.pt")
    # the same text, other token files (another split or tokenizer): refused as well, naming them
    with pytest.raises(CheckpointError, match=f"train_sha256 {theirs['train_sha256'][:16]}"):
        check_same_data("x.pt", checkpoint_on(dict(ours, train_sha256=theirs["train_sha256"])), ours, "here")


def test_a_checkpoint_from_before_the_data_key_resumes_with_a_warning(data_dir, capsys):
    ours = data_identity(read_meta(data_dir))
    check_same_data("old.pt", {"step": 5, "config": {}}, ours, "here")
    assert capsys.readouterr().out.splitlines() == [
        f"old.pt: made before checkpoints recorded their data; resuming it as if made on this text "
        f"(sha256 {ours['text_sha256'][:16]}, data_url here)"
    ]


@pytest.mark.slow
def test_own_text_trains_in_its_own_folder_and_shakespeare_never_resumes_it(own_text, tmp_path):
    """Item 4 and DATA_URL: a run on another text records it in every full checkpoint, and a run on
    tiny Shakespeare refuses that folder in one line, leaving it as it was."""
    checkpoints = tmp_path / "checkpoints"
    mine = run_script(checkpoints, data_url=own_text, max_steps=10)
    folder = data_folder(os.environ["GPT2_DATA_DIR"], str(own_text))
    meta = read_meta(folder)
    assert folder.name == data_label(str(own_text)) and (folder / "input.txt").read_bytes() == own_text.read_bytes()
    assert ["data", str(own_text)] in [line.split() for line in mine.stdout.splitlines()]  # the settings table
    assert f"{folder / 'input.txt'}: train {meta['train_tokens']:,} tokens" in mine.stdout
    assert f"{meta['train_tokens']:,} training tokens = " in mine.stdout  # epochs counted on this text
    for path in sorted(checkpoints.glob("model_*full.pt")) + sorted(checkpoints.glob("model_step_*.pt")):
        assert torch.load(path, weights_only=True)["data"] == data_identity(meta), path
    before = {p: p.read_bytes() for p in checkpoints.rglob("*") if p.is_file()}
    refused = run_script(checkpoints, check=False)  # the tests' tiny Shakespeare
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {checkpoints / 'model_final_full.pt'}: made on other data: text_sha256 {meta['source_sha256'][:16]}"
    )
    assert {p: p.read_bytes() for p in checkpoints.rglob("*") if p.is_file()} == before
