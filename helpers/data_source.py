"""Where the training text comes from: data_url as a download (http, https), a local path or a file:// URL.

Tiny Shakespeare is the default. Any other text gets a name of its own, `<name>-<8 hex>`, for its
folder of token files (`data/<label>/`) and its run's checkpoint folder, so that runs on two
texts never share either.
"""

from __future__ import annotations

import hashlib
import urllib.parse
import urllib.request
from pathlib import Path

from helpers.config import SHAKESPEARE_URL  # the default data_url: a setting, so the settings own it
from helpers.errors import DataError, describe
from helpers.fileio import atomic_write_bytes

SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SETTING = "data_url (the form's DATA_URL, or GPT2_DATA_URL)"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def local_source(url: str) -> Path | None:
    """The file a data_url names on this machine (a path, or file://), or None for a download (http, https)."""
    try:
        parsed = urllib.parse.urlparse(url)
    except ValueError as e:
        raise DataError(url, f"is not a valid URL or path ({describe(e)}); {SETTING} names the text") from None
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https", "ftp"):
        return None
    return Path(url).expanduser()  # a plain path, relative to the working directory (in Colab, /content)


def _local_file(url: str) -> Path:
    """data_url's local file, which must exist and be a file."""
    path = local_source(url)
    if path.is_dir():
        raise DataError(path, f"is a folder; {SETTING} must name a text file")
    if not path.is_file():
        raise DataError(path, f"no such file; {SETTING} must name a text file (a path, or an http(s) or file:// URL)")
    return path


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)[:40].strip("-.") or "text"


def data_label(url: str) -> str:
    """'' for tiny Shakespeare, else '<name>-<8 hex>': the name of data_url's text in data and checkpoint folders.

    The hex is the sha256 of a local file's bytes (an edited text is another text) or of a
    download's address (whose bytes are only known once fetched; meta.json and the
    checkpoints then record them, and resuming checks them).
    """
    if url == SHAKESPEARE_URL:
        return ""
    local = local_source(url)
    if local is not None:
        digest = sha256_of(_local_file(url))
        return "" if digest == SHAKESPEARE_SHA256 else f"{_slug(local.stem)}-{digest[:8]}"
    name = Path(urllib.parse.urlparse(url).path).stem
    return f"{_slug(name)}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def data_folder(data_dir: str | Path, url: str) -> Path:
    """Where data_url's text and token files go: data_dir for tiny Shakespeare, a folder below it for other text."""
    label = data_label(url)
    return Path(data_dir) / label if label else Path(data_dir)


def decoded(payload: bytes, name: str | Path) -> str:
    """payload as text, or a DataError naming name: empty, or not UTF-8."""
    if not payload:
        raise DataError(name, f"is empty; {SETTING} must name a UTF-8 text file")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            name,
            f"is not UTF-8 text (byte 0x{payload[e.start]:02x} at offset {e.start}: binary?); "
            f"{SETTING} must name a UTF-8 text file",
        ) from None
    if "\0" in text[:8192]:  # valid UTF-8, but no text file holds NUL bytes (git's test for binary, too)
        raise DataError(
            name,
            f"holds NUL bytes at offset {text.index(chr(0))}: binary, not text; {SETTING} must name a UTF-8 text file",
        )
    return text


def fetch_text(url: str, path: Path, expected_sha256: str | None = None) -> None:
    """Put data_url's text at path: downloaded once, or copied from a local file whenever that file changed."""
    local = local_source(url)
    if path.exists() and path.stat().st_size and (local is None or sha256_of(path) == sha256_of(_local_file(url))):
        return  # (an empty file holds nothing to lose: fetched again)
    if local is not None:
        payload = _local_file(url).read_bytes()
    else:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                payload = response.read()
        except (OSError, ValueError) as e:  # URLError, HTTPError, timeouts: OSErrors; a malformed URL: ValueError
            raise DataError(
                url,
                f"could not download ({describe(e)}); check the address and the network, "
                f"or set {SETTING} to a local file",
            ) from None
    if expected_sha256 is not None and hashlib.sha256(payload).hexdigest() != expected_sha256:
        raise DataError(url, "the text does not match tiny Shakespeare's sha256 (a changed or partial download?)")
    decoded(payload, local or url)
    atomic_write_bytes(path, payload)
