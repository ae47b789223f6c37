"""The training text: fetched from data_url, tokenised with GPT-2's BPE, checked by hash, and sampled in batches.

The layout is nanoGPT's: `input.txt`, then `train.bin` and `val.bin` as uint16 token ids, split
90/10 by characters before encoding, and `meta.json` with the sha256 of all three. Tiny
Shakespeare lives in `data/` itself; any other text in a folder of its own below it
(`data/<name>-<hash>/`), so that two texts never share token files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import tiktoken
import torch

from helpers.config import SHAKESPEARE_URL  # the default data_url: a setting, so the settings own it
from helpers.data_source import SETTING, SHAKESPEARE_SHA256, data_label, decoded, fetch_text, sha256_of
from helpers.errors import CheckpointError, DataError, describe
from helpers.fileio import atomic_write_bytes
from helpers.training.distributed import print0

ENCODING = "gpt2"
VOCAB_SIZE = 50257  # GPT-2's token ids are 0 to 50,256
TRAIN_FRACTION = 0.9
SPLITS = ("train", "val")
IDENTITY = ("text_sha256", "train_sha256", "val_sha256")  # a run's data, in meta.json's terms: see data_identity


def get_encoding() -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding (cached by tiktoken; TIKTOKEN_CACHE_DIR works offline)."""
    return tiktoken.get_encoding(ENCODING)


def _why_stale(data_dir: Path, text_sha256: str) -> str | None:
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
    if meta.get("source_sha256") != text_sha256 or meta.get("encoding") != ENCODING:
        return "input.txt has changed since the token files were made"
    for split in SPLITS:
        recorded = meta.get(f"{split}_sha256")
        if recorded is None:
            return f"meta.json records no sha256 of {split}.bin (made by an older version)"
        if not (data_dir / f"{split}.bin").is_file():
            return f"{split}.bin is missing"
        if sha256_of(data_dir / f"{split}.bin") != recorded:
            return f"{split}.bin does not match the sha256 in meta.json (changed or damaged)"
    return None


def prepare_data(data_dir: str | Path, url: str = SHAKESPEARE_URL) -> dict:
    """Make train.bin and val.bin in data_dir from data_url's text, reusing them only when their hashes match meta.json.

    The folder of tiny Shakespeare (see data_folder) must hold tiny Shakespeare: another text
    found there is refused, never overwritten. A cache that does not match is reported and made again.
    """
    data_dir = Path(data_dir)
    text_path = data_dir / "input.txt"
    shakespeare = data_label(url) == ""
    if shakespeare and text_path.exists() and text_path.stat().st_size and sha256_of(text_path) != SHAKESPEARE_SHA256:
        raise DataError(
            text_path,
            f"is not tiny Shakespeare, which {SETTING} names; to train on this text, set "
            "data_url to its path; to train on Shakespeare, move it away",
        )
    fetch_text(url, text_path, SHAKESPEARE_SHA256 if shakespeare else None)
    text_sha256 = sha256_of(text_path)
    reason = _why_stale(data_dir, text_sha256)
    if reason is None:
        return dict(read_meta(data_dir), reused=True)
    if reason != "no meta.json":
        print0(f"{data_dir}: {reason}: making the token files again")
    text = decoded(text_path.read_bytes(), text_path)
    cut = int(len(text) * TRAIN_FRACTION)
    enc = get_encoding()
    meta = {"source_sha256": text_sha256, "encoding": ENCODING, "vocab_size": enc.n_vocab, "data_url": url}
    for split, part in (("train", text[:cut]), ("val", text[cut:])):
        payload = np.array(enc.encode_ordinary(part), dtype=np.uint16).tobytes()  # GPT-2 ids fit in 16 bits
        atomic_write_bytes(data_dir / f"{split}.bin", payload)
        meta[f"{split}_tokens"] = len(payload) // 2
        meta[f"{split}_sha256"] = hashlib.sha256(payload).hexdigest()
    atomic_write_bytes(data_dir / "meta.json", json.dumps(meta, indent=2).encode())
    return dict(meta, reused=False)


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
    for split, fraction in (("train", train_fraction), ("val", 1.0)):
        path = Path(data_dir) / f"{split}.bin"
        tokens = load_tokens(data_dir, split) if path.stat().st_size else np.zeros(0, np.uint16)  # mmap refuses 0 bytes
        tokens = tokens[: int(len(tokens) * fraction)]
        if len(tokens) <= block_size:
            part = f"with train_fraction {fraction}, " if fraction < 1 else ""
            share = "the first 90%" if split == "train" else "the last 10%"
            raise DataError(
                path,
                f"{part}{len(tokens)} tokens, too few for one window of block_size + 1 = "
                f"{block_size + 1} ({split} is {share} of {Path(data_dir) / 'input.txt'}); "
                "use a longer text or a smaller block_size (GPT2_BLOCK_SIZE)",
            )
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
