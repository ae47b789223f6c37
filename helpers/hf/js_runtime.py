"""The browser runtime of the static Space, vendored: onnxruntime-web and a GPT-2 tokenizer from npm, pinned.

The page must work from any static host with no third-party CDN, so its JavaScript travels in
the folder. Python fetches each pinned npm tarball from the registry itself (urllib, no Node.js:
Colab and a user's machine need nothing new), checks it against the registry's sha512 integrity
pinned here, keeps it in a cache (one download per machine) and copies out the few files the page
loads. To move to another version, take its `dist.integrity` from `npm view PACKAGE@VERSION`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import urllib.request
from pathlib import Path

from helpers.errors import PathError, describe
from helpers.fileio import atomic_write_bytes

REGISTRY = "https://registry.npmjs.org"
# package -> (version, npm's dist.integrity, license, the files the page loads from its tarball)
PACKAGES = {
    "onnxruntime-web": (
        "1.30.0",
        "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ==",
        "MIT",
        (
            # WebAssembly alone (what a visitor without WebGPU loads), then the WebGPU build (its own WebAssembly)
            "dist/ort.wasm.min.mjs",
            "dist/ort-wasm-simd-threaded.mjs",
            "dist/ort-wasm-simd-threaded.wasm",
            "dist/ort.webgpu.min.mjs",
            "dist/ort-wasm-simd-threaded.asyncify.mjs",
            "dist/ort-wasm-simd-threaded.asyncify.wasm",
        ),
    ),
    "@huggingface/tokenizers": (
        "0.2.0",
        "sha512-LidMHe1FpcSYH4vcSjXooda34pC0M8m1gmDOv7SQi6Iv+ib1zX7J3sHBCC9/3FPCkn2k1b55FneVqMRxrr99pg==",
        "Apache-2.0",
        ("dist/tokenizers.min.mjs",),
    ),
}


def cache_dir() -> Path:
    """Where fetched tarballs are kept: $GPT2_NPM_CACHE, else the user's cache folder."""
    if os.environ.get("GPT2_NPM_CACHE"):
        return Path(os.environ["GPT2_NPM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpt2-shakespeare" / "npm"


def tarball_url(name: str, version: str) -> str:
    """npm's tarball address: @scope/pkg -> REGISTRY/@scope/pkg/-/pkg-VERSION.tgz."""
    return f"{REGISTRY}/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"


def matches(payload: bytes, integrity: str) -> bool:
    """Whether payload has npm's Subresource-Integrity string ("sha512-BASE64")."""
    algorithm, digest = integrity.split("-", 1)
    return base64.b64encode(hashlib.new(algorithm, payload).digest()).decode() == digest


def tarball(name: str) -> bytes:
    """The pinned tarball of an npm package, from the cache or the registry; PathError if it cannot be had intact."""
    version, integrity, _, _ = PACKAGES[name]
    path = cache_dir() / f"{name.replace('/', '+')}-{version}.tgz"
    if path.is_file() and matches(payload := path.read_bytes(), integrity):
        return payload
    url = tarball_url(name, version)
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            payload = response.read()
    except OSError as e:  # offline, DNS, HTTP errors
        raise PathError(
            url,
            f"cannot be downloaded ({describe(e)}); the static Space needs it once, then it is cached in {path.parent}",
        ) from None
    if not matches(payload, integrity):
        raise PathError(url, f"is not the pinned {name}@{version} (its sha512 differs from {integrity[:24]}...)")
    atomic_write_bytes(path, payload)
    return payload


def vendor_runtime(folder: Path) -> dict[str, str]:
    """Copy the page's JavaScript into folder (flat, by file name); {package: version} of what was copied."""
    folder.mkdir(parents=True, exist_ok=True)
    notice = ["The JavaScript the page runs, copied unchanged from these npm packages:"]
    for name, (version, integrity, license_, files) in PACKAGES.items():
        with tarfile.open(fileobj=io.BytesIO(tarball(name)), mode="r:gz") as tar:
            for member in files:
                atomic_write_bytes(folder / Path(member).name, tar.extractfile(f"package/{member}").read())
        notice.append(f"{name}@{version} ({license_}; {integrity}): {', '.join(Path(f).name for f in files)}")
    atomic_write_bytes(folder / "NOTICE.txt", "\n".join(notice).encode() + b"\n")
    return {name: spec[0] for name, spec in PACKAGES.items()}
