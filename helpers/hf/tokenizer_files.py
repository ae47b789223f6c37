"""GPT-2's tokenizer files (vocab.json, merges.txt) for a transformers folder, taken from tiktoken's cache."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from helpers.errors import describe

EOT_ID = 50256  # <|endoftext|>: GPT-2's bos, eos and unk token
EOT = "<|endoftext|>"
# tiktoken's two files for the "gpt2" encoding are GPT-2's tokenizer files under other names:
# encoder.json is vocab.json and vocab.bpe is merges.txt. URL (tiktoken's cache key) and sha256:
GPT2_TOKENIZER_FILES = {
    "vocab.json": (
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
    "merges.txt": (
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
}


def tiktoken_cache_dir() -> Path | None:
    """Where tiktoken caches its downloads (its own rule), or None when caching is disabled."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return Path(os.environ[var]) if os.environ[var] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def gpt2_tokenizer_files() -> dict[str, Path]:
    """GPT-2's vocab.json and merges.txt from tiktoken's cache (downloaded if need be); FileNotFoundError says why."""
    import tiktoken

    try:
        tiktoken.get_encoding("gpt2")  # downloads the two files into tiktoken's cache if missing
    except Exception as e:  # no network and no cache: requests', urllib's and tiktoken's own errors
        raise FileNotFoundError(f"tiktoken cannot load its gpt2 encoding ({describe(e, 120)})") from None
    cache = tiktoken_cache_dir()
    if cache is None:
        raise FileNotFoundError("tiktoken's cache is disabled (TIKTOKEN_CACHE_DIR is empty)")
    files = {}
    for name, (url, sha256) in GPT2_TOKENIZER_FILES.items():
        path = cache / hashlib.sha1(url.encode()).hexdigest()  # tiktoken names cached files so
        if not path.is_file():
            raise FileNotFoundError(f"{path} (tiktoken's copy of {url.rsplit('/', 1)[1]}) is missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
            raise FileNotFoundError(f"{path} is not GPT-2's {url.rsplit('/', 1)[1]} (sha256 differs)")
        files[name] = path
    return files


def tokenizer_config(block_size: int) -> dict:
    """tokenizer_config.json for GPT-2's tokenizer with our context length."""
    return {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": block_size,
        "add_prefix_space": False,
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": EOT,
        "errors": "replace",
    }


def gpt2_tokenizer_json(files: dict[str, Path]) -> str:
    """tokenizer.json (the tokenizers format, which tokenizers.js loads) from GPT-2's vocab.json and merges.txt."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    tokenizer = Tokenizer(models.BPE.from_file(str(files["vocab.json"]), str(files["merges.txt"])))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's split and byte mapping
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens([AddedToken(EOT, special=True)])
    return tokenizer.to_str()
