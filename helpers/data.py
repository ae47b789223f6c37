"""The training text: fetched from data_url, tokenised with GPT-2's BPE, checked by hash, and sampled in batches.

The layout is nanoGPT's: `input.txt`, then `train.bin` and `val.bin` as uint16 token ids, split
90/10 by characters before encoding, and `meta.json` with the sha256 of all three. Tiny
Shakespeare lives in `data/` itself; any other text in a folder of its own below it
(`data/<name>-<hash>/`), so that two texts never share token files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from array import array
from functools import partial
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, TypeVar

import numpy as np
import tiktoken
import torch
from tqdm.auto import tqdm

from helpers.config import SHAKESPEARE_URL  # the default data_url: a setting, so the settings own it
from helpers.data_source import (
    SHAKESPEARE_SHA256,
    copy_name,
    download,
    local_files,
    sha256_of,
    text_identity,
)
from helpers.documents import SETTING, Reading, documents
from helpers.errors import CheckpointError, DataError, describe
from helpers.fileio import atomic_write, atomic_write_bytes
from helpers.token_stream import encode_pieces, split_pieces
from helpers.training.distributed import print0

ENCODING = "gpt2"
VOCAB_SIZE = 50257  # GPT-2's token ids are 0 to 50,256
TRAIN_FRACTION = 0.9
SPLITS = ("train", "val")
MIN_DOCUMENTS_TO_SPLIT = 10  # with fewer documents, the validation split is the last 10% of the characters
READ_BY_DEFAULT = dataclasses.asdict(Reading())
T = TypeVar("T")
IDENTITY = ("text_sha256", "train_sha256", "val_sha256")  # a run's data, in meta.json's terms: see data_identity


def get_encoding() -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding (cached by tiktoken; TIKTOKEN_CACHE_DIR works offline)."""
    return tiktoken.get_encoding(ENCODING)


def _why_stale(data_dir: Path, digest: str, reading: Reading) -> str | None:
    """Why the token files in data_dir cannot be reused for this text (None: they can), checked by hash."""
    meta_path = data_dir / "meta.json"
    if not meta_path.exists():
        return "no meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        return f"meta.json is not valid JSON ({describe(e)})"
    if not isinstance(meta, dict):
        return "meta.json does not hold a JSON object"
    if meta.get("source_sha256") != digest or meta.get("encoding") != ENCODING:
        return f"{'the text' if meta.get('files') else 'input.txt'} has changed since the token files were made"
    if meta.get("reading", READ_BY_DEFAULT) != dataclasses.asdict(reading):  # (meta.json before folders had none)
        return f"the text was read otherwise (GPT2_TEXT_FIELD, GPT2_DATA_ENCODING: {meta.get('reading')})"
    for split in SPLITS:
        recorded = meta.get(f"{split}_sha256")
        if recorded is None:
            return f"meta.json records no sha256 of {split}.bin (made by an older version)"
        if not (data_dir / f"{split}.bin").is_file():
            return f"{split}.bin is missing"
        if sha256_of(data_dir / f"{split}.bin") != recorded:
            return f"{split}.bin does not match the sha256 in meta.json (changed or damaged)"
    return None


Source = tuple  # (name in errors, a function that opens its bytes, its suffix)


def _sources(
    url: str, data_dir: Path, shakespeare: bool, digest: str | None, downloaded: BinaryIO
) -> tuple[Path | str, list[Source], str, Source | None]:
    """(what data_url names, its files as Sources, the text's sha256, the Source to keep a copy of as input.*, if any).

    digest is text_identity(url)'s, known already; a download goes into the temporary file downloaded.
    A single file is kept in data_dir (a download fetched once, a local file copied whenever it
    changed), as nanoGPT keeps input.txt; a folder's or a glob's files are read where they are.
    """
    copy = data_dir / copy_name(url)
    found = local_files(url)
    if found is None:  # a download: once
        if copy.is_file() and copy.stat().st_size:
            return url, [(copy, partial(open, copy, "rb"), copy.suffix)], sha256_of(copy), None
        digest = download(url, downloaded, SHAKESPEARE_SHA256 if shakespeare else None)
        source = (url, partial(open, downloaded.name, "rb"), copy.suffix)
        return url, [source], digest, source
    root, files = found
    if files == [root]:
        source = (root, partial(open, root, "rb"), copy.suffix)
        same = copy.is_file() and copy.stat().st_size == root.stat().st_size and sha256_of(copy) == digest
        return root, [source], digest, None if same else source
    files = [f for f in files if f.stat().st_size]  # an empty file in a folder holds no document
    if not files:
        raise DataError(root, f"holds no text (every file is empty); {SETTING} names the text")
    return root, [(f, partial(open, f, "rb"), f.suffix) for f in files], digest, None


def _items(sources: list[Source], reading: Reading) -> Iterator[str | None]:
    """The documents of every source in order: their text in chunks, None after each."""
    for name, open_binary, suffix in sources:
        yield from documents(name, open_binary, reading, suffix)


def _split_point(root: Path | str, sources: list[Source], reading: Reading) -> tuple[int, int, int, str]:
    """(documents, characters, training characters, how split), reading every source once: bad input stops here."""
    lengths, current = array("q"), 0
    for item in _items(sources, reading):
        if item is None:
            if current:
                lengths.append(current)
            current = 0
        else:
            current += len(item)
    total = sum(lengths)
    if not total:
        raise DataError(root, f"holds no text (every document is empty); {SETTING} names the text")
    if len(lengths) >= MIN_DOCUMENTS_TO_SPLIT:  # the last 10% of the documents, none cut in two
        n_val = max(1, round(len(lengths) * (1 - TRAIN_FRACTION)))
        return len(lengths), total, sum(lengths[: len(lengths) - n_val]), "documents"
    return len(lengths), total, int(total * TRAIN_FRACTION), "characters"


def _write_splits(
    data_dir: Path, tokens: Iterator[tuple[int, np.ndarray]], block_size: int | None, text: Path | str, how: str
) -> dict:
    """Write train.bin and val.bin from (split, tokens) as they come; their counts and sha256s.

    Both are written to temporary files and renamed into place only when both are complete (and,
    with block_size, each holds a window): a failure leaves the old files, or none.
    """
    meta = {}

    def fill_train(train: BinaryIO) -> None:
        def fill_val(val: BinaryIO) -> None:
            digests, counts, files = [hashlib.sha256(), hashlib.sha256()], [0, 0], (train, val)
            for split, part in tokens:
                files[split].write(part.data)  # the array's own bytes, not a copy
                digests[split].update(part.data)
                counts[split] += len(part)
            for i, split in enumerate(SPLITS):
                if block_size is not None and counts[i] <= block_size:
                    raise DataError(data_dir / f"{split}.bin", window_problem(split, counts[i], block_size, text, how))
                meta.update({f"{split}_tokens": counts[i], f"{split}_sha256": digests[i].hexdigest()})

        atomic_write(data_dir / "val.bin", fill_val)

    atomic_write(data_dir / "train.bin", fill_train)
    return meta


def window_problem(
    split: str, n_tokens: int, block_size: int, text: Path | str, how: str = "characters", fraction: float = 1.0
) -> str:
    """Why a split of n_tokens cannot train at block_size, and what to change."""
    part = f"with train_fraction {fraction}, " if fraction < 1 else ""
    share = "the first 90%" if split == "train" else "the last 10%"
    share += " of the documents" if how == "documents" else ""
    return (
        f"{part}{n_tokens} tokens, too few for one window of block_size + 1 = {block_size + 1} ({split} is "
        f"{share} of {text}); use a longer text or a smaller block_size (GPT2_BLOCK_SIZE)"
    )


def prepare_data(
    data_dir: str | Path,
    url: str = SHAKESPEARE_URL,
    reading: Reading = Reading(),
    block_size: int | None = None,
    workers: int | None = None,
) -> dict:
    """Make train.bin and val.bin in data_dir from data_url's text, reusing them only when their hashes match meta.json.

    The text is read twice, never whole: once to check it and count its documents (bad input
    stops here, before anything is written), once to tokenise it in workers processes (default:
    every core). With block_size, a split too short for one window is refused before it is written.
    The folder of tiny Shakespeare (see data_folder) must hold tiny Shakespeare: another text
    found there is refused, never overwritten. A cache that does not match is reported and made again.
    """
    data_dir = Path(data_dir)
    text_path = data_dir / "input.txt"
    identity = text_identity(url)  # a local text's, read once (None: a download)
    digest, listing = identity or (None, None)
    shakespeare = reading == Reading() and (url == SHAKESPEARE_URL or digest == SHAKESPEARE_SHA256)
    if shakespeare and text_path.exists() and text_path.stat().st_size and sha256_of(text_path) != SHAKESPEARE_SHA256:
        raise DataError(
            text_path,
            f"is not tiny Shakespeare, which {SETTING} names; to train on this text, set "
            "data_url to its path; to train on Shakespeare, move it away",
        )
    with tempfile.NamedTemporaryFile(prefix="gpt2-download-") as downloaded:  # a download's bytes; removed at the end
        root, sources, text_digest, to_copy = _sources(url, data_dir, shakespeare, digest, downloaded)
        text = root if listing is not None else data_dir / copy_name(url)  # what messages name: a folder, or the copy
        reason = _why_stale(data_dir, text_digest, reading)
        if reason is None:
            if to_copy is not None:
                _keep_copy(to_copy, data_dir / copy_name(url))
            return dict(read_meta(data_dir), reused=True, text=str(text))
        if reason != "no meta.json":
            print0(f"{data_dir}: {reason}: making the token files again")
        n_docs, n_chars, cut, how = _split_point(root, sources, reading)
        enc = get_encoding()
        with tqdm(total=n_chars, unit="char", unit_scale=True, desc=f"tokenising {Path(str(root)).name}") as bar:

            def counted(pieces: Iterator[tuple[int, str | None]]) -> Iterator[tuple[int, str | None]]:
                for split, piece in pieces:
                    bar.update(len(piece or ""))
                    yield split, piece

            tokens = encode_pieces(counted(split_pieces(_items(sources, reading), cut)), enc, workers)
            meta = _written(data_dir, "the token files", lambda: _write_splits(data_dir, tokens, block_size, text, how))
        if to_copy is not None:
            _written(data_dir, copy_name(url), lambda: _keep_copy(to_copy, data_dir / copy_name(url)))
        meta = {
            "source_sha256": text_digest,
            "encoding": ENCODING,
            "vocab_size": enc.n_vocab,
            "data_url": url,
            **meta,
            "documents": n_docs,
            "split": how,  # "characters": the first 90% of them; "documents": the last 10% of them for validation
            "text": str(text),
            "reading": dataclasses.asdict(reading),
        }
        if listing is not None:
            meta["files"] = listing
        payload = json.dumps(meta, indent=2).encode()
        _written(data_dir, "meta.json", lambda: atomic_write_bytes(data_dir / "meta.json", payload))
        return dict(meta, reused=False)


def _written(data_dir: Path, what: str, write: Callable[[], T]) -> T:
    """write(), a failure to write (a full or read-only disk) as a DataError naming the folder; the old files stay."""
    try:
        return write()
    except OSError as e:
        raise DataError(
            data_dir,
            f"cannot write {what} ({e.strerror or describe(e)}); free some space, or set data_dir "
            "(GPT2_DATA_DIR) to a folder on another disk",
        ) from None


def _keep_copy(source: Source, path: Path) -> None:
    """A single file's copy in its data folder (input.txt), written whole or not at all."""
    with source[1]() as f:
        atomic_write(path, lambda out: shutil.copyfileobj(f, out, 1 << 20))


def read_meta(data_dir: str | Path) -> dict:
    """meta.json of prepared data (the other processes under torchrun read what the first one made)."""
    path = Path(data_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(path, f"cannot be read ({describe(e)})") from None
    return meta


def data_identity(meta: dict) -> dict:
    """What a run trained on: the sha256 of the text and of both token files, recorded in every full checkpoint."""
    return {
        "text_sha256": meta["source_sha256"],
        "train_sha256": meta["train_sha256"],
        "val_sha256": meta["val_sha256"],
    }


def check_same_data(
    path: str | Path,
    ckpt: dict,
    identity: dict,
    data_url: str,
    resume: str = "auto",
) -> None:
    """Refuse to resume a checkpoint made on other data (its best loss was measured on another text), in one line.

    A checkpoint from before checkpoints recorded their data is resumed with a warning: nothing
    says what it was trained on, and such files were made on the text of their data_url.
    """
    theirs = ckpt.get("data")
    if not isinstance(theirs, dict):
        print0(
            f"{path}: made before checkpoints recorded their data; resuming it as if made on this text "
            f"(sha256 {identity['text_sha256'][:16]}, data_url {data_url})"
        )
        return
    differs = next((key for key in IDENTITY if theirs.get(key) != identity[key]), None)
    if differs is None:
        return
    their_url = ckpt.get("config", {}).get("data_url", "?")
    way = (
        "use another checkpoint folder (GPT2_CHECKPOINT_DIR; on Drive, GPT2_DRIVE_DIR) or move these checkpoints away"
        if resume == "auto"
        else "start over with GPT2_RESUME=never"
    )
    raise CheckpointError(
        path,
        f"made on other data: {differs} {str(theirs.get(differs))[:16]} (data_url "
        f"{their_url}), this run's {identity[differs][:16]} (data_url {data_url}); to train "
        f"on this text, {way}; to continue that run, set data_url back to its text",
    )


def load_splits(
    data_dir: str | Path, block_size: int, train_fraction: float = 1.0, vocab_size: int = VOCAB_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """The training (its first train_fraction) and validation tokens, each refused if under a window or not GPT-2's."""
    splits = []
    try:  # only for the message below: how the text was split
        meta = json.loads((Path(data_dir) / "meta.json").read_text())
    except (OSError, ValueError):
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    text, how = meta.get("text", Path(data_dir) / "input.txt"), meta.get("split", "characters")
    for split, fraction in (("train", train_fraction), ("val", 1.0)):
        path = Path(data_dir) / f"{split}.bin"
        tokens = load_tokens(data_dir, split) if path.stat().st_size else np.zeros(0, np.uint16)  # mmap refuses 0 bytes
        tokens = tokens[: int(len(tokens) * fraction)]
        if len(tokens) <= block_size:
            raise DataError(path, window_problem(split, len(tokens), block_size, text, how, fraction))
        if int(tokens.max()) >= vocab_size:  # one pass (under a millisecond for the plays); else an IndexError later
            raise DataError(
                path,
                f"holds token id {int(tokens.max())}, beyond GPT-2's {vocab_size:,}: not a token "
                "file of this project; delete it and meta.json to make them again",
            )
        splits.append(tokens)
    return splits[0], splits[1]


def load_tokens(data_dir: str | Path, split: str) -> np.memmap:
    """The split's token ids, memory-mapped."""
    return np.memmap(Path(data_dir) / f"{split}.bin", dtype=np.uint16, mode="r")


def sample_offsets(generator: torch.Generator, n_tokens: int, block_size: int, n_rows: int) -> torch.Tensor:
    """n_rows random start positions for windows of block_size + 1 tokens."""
    return torch.randint(n_tokens - block_size, (n_rows,), generator=generator)


def get_batch(
    tokens: np.ndarray, offsets: torch.Tensor, block_size: int, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets, (len(offsets), block_size) each, on device."""
    x = torch.stack([torch.from_numpy(tokens[i : i + block_size].astype(np.int64)) for i in offsets.tolist()])
    y = torch.stack([torch.from_numpy(tokens[i + 1 : i + 1 + block_size].astype(np.int64)) for i in offsets.tolist()])
    if torch.device(device).type == "cuda":
        # pinned memory lets the copy overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def step_offsets(
    generator: torch.Generator, n_tokens: int, block_size: int, batch_size: int, grad_accum_steps: int
) -> torch.Tensor:
    """One optimizer step's start positions, (grad_accum_steps, batch_size).

    The whole global batch is drawn at once, from a generator every process seeds alike, so the
    data a step sees does not depend on how many processes share it: process r of W takes rows
    r, r + W, r + 2W, ...
    """
    return sample_offsets(generator, n_tokens, block_size, grad_accum_steps * batch_size).view(
        grad_accum_steps, batch_size
    )


def eval_offsets(n_tokens: int, block_size: int, batch_size: int, max_batches: int = 0) -> list[torch.Tensor]:
    """Start positions of consecutive, non-overlapping windows over a split, in batches.

    All of them (max_batches=0): one pass that sees every token once, so a loss over it is exact,
    and the same text every time, so two evaluations differ only by the model. Else the first
    max_batches batches, for quick runs.
    """
    starts = torch.arange((n_tokens - 1) // block_size) * block_size
    batches = list(starts.split(batch_size))
    return batches[:max_batches] if max_batches else batches
