"""Where the training text comes from: data_url as a download (http, https) of a file, or a local file, folder or glob.

Tiny Shakespeare is the default. Any other text gets a name of its own, `<name>-<8 hex>`, for its
folder of token files (`data/<label>/`) and its run's checkpoint folder, so that runs on two
texts never share either. docs/data.md says what data_url may name.
"""

from __future__ import annotations

import glob
import hashlib
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from helpers.config import SHAKESPEARE_URL  # the default data_url: a setting, so the settings own it
from helpers.documents import SETTING, TEXT_SUFFIXES, Reading
from helpers.errors import DataError, describe

SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
_IDENTITIES: dict[tuple, tuple[str, list[list[str]] | None]] = {}  # text_identity's answers in this process


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
    if not path.is_file():
        raise DataError(path, f"no such file; {SETTING} must name a text file (a path, or an http(s) or file:// URL)")
    return path


def local_files(url: str) -> tuple[Path, list[Path]] | None:
    """(the folder or file data_url names, the text files it means, in path order); None for a download.

    A folder means every .txt, .md, .jsonl, .csv and .tsv file below it (hidden ones left out); a
    path with * ? or [ that names no file is a glob, and means the files it matches.
    """
    path = local_source(url)
    if path is None:
        return None
    if path.is_file():
        return path, [path]
    if path.is_dir():
        every = sorted(p for p in path.rglob("*") if not any(n.startswith(".") for n in p.relative_to(path).parts))
        if not every:
            raise DataError(path, f"is a folder with nothing in it; {SETTING} must name text files")
        files = [p for p in every if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES]
        if not files:
            found = ", ".join(str(p.relative_to(path)) for p in every[:5]) + (", ..." if len(every) > 5 else "")
            raise DataError(path, f"is a folder with no {', '.join(TEXT_SUFFIXES)} file in it (it holds {found})")
        return path, files
    if glob.has_magic(str(path)):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(path, f"matches no file; {SETTING} names the text")
        fixed = next(i for i, part in enumerate(path.parts) if glob.has_magic(part))
        return Path(*path.parts[:fixed]), files  # the folder above the pattern: the text's name, the paths' root
    return path, [_local_file(url)]


def text_identity(url: str) -> tuple[str, list[list[str]] | None] | None:
    """(the sha256 that names data_url's text, a folder's [path below it, sha256] of each file); None for a download.

    A file's sha256 is of its bytes; a folder's (or a glob's) of its files' paths and sha256s, so
    that an added, removed, renamed or edited file makes another text.
    """
    found = local_files(url)
    if found is None:
        return None
    root, files = found
    # A start asks three times (the data folder, the run folder, prepare_data): a big text is read
    # once, and again only when a file's size, time or inode says it changed.
    key = (root, tuple((str(p), s.st_size, s.st_mtime_ns, s.st_ino) for p in files for s in [p.stat()]))
    if key not in _IDENTITIES:
        if root == files[0]:
            _IDENTITIES[key] = sha256_of(root), None
        else:
            listing = [[p.relative_to(root).as_posix(), sha256_of(p)] for p in files]
            text = "".join(f"{name}\t{digest}\n" for name, digest in listing)
            _IDENTITIES[key] = hashlib.sha256(text.encode()).hexdigest(), listing
    return _IDENTITIES[key]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)[:40].strip("-.") or "text"


def data_label(url: str, reading: Reading = Reading()) -> str:
    """'' for tiny Shakespeare, else '<name>-<8 hex>': the name of data_url's text in data and checkpoint folders.

    The name is the file's or the folder's; the hex is the sha256 of a local file's bytes or of a
    folder's files (an edited text is another text), or of a download's address (whose bytes are
    only known once fetched; meta.json and the checkpoints then record them, and resuming checks
    them). A text field or an encoding other than the defaults is part of it too: another reading.
    """
    if url == SHAKESPEARE_URL and reading == Reading():
        return ""
    identity = text_identity(url)
    digest = identity and identity[0]
    if digest is None:
        name, digest = Path(urllib.parse.urlparse(url).path).stem, hashlib.sha256(url.encode()).hexdigest()
    elif digest == SHAKESPEARE_SHA256 and reading == Reading():
        return ""
    else:
        root = local_files(url)[0]
        name = root.stem if root.is_file() else root.name
    if reading != Reading():
        digest = hashlib.sha256(f"{digest}\t{reading.text_field}\t{reading.encoding}".encode()).hexdigest()
    return f"{_slug(name)}-{digest[:8]}"


def data_folder(data_dir: str | Path, url: str, reading: Reading = Reading()) -> Path:
    """Where data_url's text and token files go: data_dir for tiny Shakespeare, a folder below it for other text."""
    label = data_label(url, reading)
    return Path(data_dir) / label if label else Path(data_dir)


def download(url: str, into: BinaryIO, expected_sha256: str | None = None) -> str:
    """Write the bytes at an http(s) data_url into a file, a megabyte at a time; their sha256 (or a DataError).

    expected_sha256, when given, must match (tiny Shakespeare's).
    """
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                into.write(chunk)
    except (OSError, ValueError) as e:  # URLError, HTTPError, timeouts: OSErrors; a malformed URL: ValueError
        raise DataError(
            url,
            f"could not download ({describe(e)}); check the address and the network, or set {SETTING} to a local file",
        ) from None
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        raise DataError(url, "the text does not match tiny Shakespeare's sha256 (a changed or partial download?)")
    into.flush()
    return digest.hexdigest()


def copy_name(url: str) -> str:
    """The name of a single file's copy in its data folder: input.txt, or input.jsonl, input.csv, ... by its suffix."""
    suffix = Path(urllib.parse.urlparse(url).path if local_source(url) is None else str(local_source(url))).suffix
    return f"input{suffix.lower() if suffix.lower() in TEXT_SUFFIXES else '.txt'}"
