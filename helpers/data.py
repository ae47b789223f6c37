"""Tiny Shakespeare: download, tokenise with GPT-2's BPE, and sample training batches.

The layout is nanoGPT's: `data/input.txt`, then `data/train.bin` and `data/val.bin` as uint16
token ids, split 90/10 by characters before encoding.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

import numpy as np
import tiktoken
import torch

from helpers.config import SHAKESPEARE_URL  # the default data_url: a setting, so the settings own it
from helpers.fileio import atomic_write_bytes

SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
ENCODING = "gpt2"
TRAIN_FRACTION = 0.9


def get_encoding() -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding (cached by tiktoken; TIKTOKEN_CACHE_DIR works offline)."""
    return tiktoken.get_encoding(ENCODING)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_shakespeare(path: Path, url: str = SHAKESPEARE_URL) -> Path:
    """Download tiny Shakespeare to path (checked against its sha256) unless it is already there."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=60) as response:
        payload = response.read()
    if hashlib.sha256(payload).hexdigest() != SHAKESPEARE_SHA256:
        raise RuntimeError(f"{url}: downloaded text does not match tiny Shakespeare's sha256")
    atomic_write_bytes(path, payload)
    return path


def prepare_data(data_dir: str | Path, url: str = SHAKESPEARE_URL) -> dict:
    """Make train.bin and val.bin in data_dir from input.txt (downloaded if absent), reusing them when up to date."""
    data_dir = Path(data_dir)
    text_path = download_shakespeare(data_dir / "input.txt", url)
    meta_path = data_dir / "meta.json"
    source_sha = sha256_of(text_path)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        up_to_date = meta.get("source_sha256") == source_sha and meta.get("encoding") == ENCODING
        for split in ("train", "val"):
            bin_path = data_dir / f"{split}.bin"
            up_to_date &= bin_path.exists() and bin_path.stat().st_size == 2 * meta.get(f"{split}_tokens", -1)
        if up_to_date:
            return dict(meta, reused=True)
    text = text_path.read_text(encoding="utf-8")
    cut = int(len(text) * TRAIN_FRACTION)
    enc = get_encoding()
    meta = {"source_sha256": source_sha, "encoding": ENCODING, "vocab_size": enc.n_vocab}
    for split, part in (("train", text[:cut]), ("val", text[cut:])):
        ids = np.array(enc.encode_ordinary(part), dtype=np.uint16)  # GPT-2 ids fit in 16 bits
        atomic_write_bytes(data_dir / f"{split}.bin", ids.tobytes())
        meta[f"{split}_tokens"] = int(ids.size)
    atomic_write_bytes(meta_path, json.dumps(meta, indent=2).encode())
    return dict(meta, reused=False)


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
