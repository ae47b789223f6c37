"""A static Space's folder served on this machine as Hugging Face serves it: with the card's custom_headers.

The card (README.md's front matter) asks the Hub for the cross-origin isolation headers; served
with them, the page may use WebAssembly threads. `python -m helpers.make_space --serve FOLDER`
runs this server, so that what a user tries locally is what the Space does; the tests and
`python -m helpers.bench space` serve with it too, with the headers and without.
"""

from __future__ import annotations

import functools
import re
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from helpers.errors import PathError


def card_headers(folder: Path) -> dict[str, str]:
    """The custom_headers of the Space card in folder (README.md), {} when it sets none."""
    card = Path(folder) / "README.md"
    try:
        text = card.read_text(encoding="utf-8")
    except OSError as e:
        raise PathError(card, f"cannot be read ({e.strerror or e}); is {folder} a static Space's folder?") from None
    front = re.match(r"---\n(.*?)\n---\n", text, re.S)
    if not front:
        raise PathError(card, "has no YAML front matter (--- lines): not a Space card")
    block = re.search(r"^custom_headers:[ \t]*\n((?:[ \t]+\S.*\n?)+)", front.group(1) + "\n", re.M)
    if not block:
        return {}
    pairs = (line.strip().split(":", 1) for line in block.group(1).splitlines() if line.strip())
    return {name.strip(): value.strip().strip("\"'") for name, value in pairs}


class SpaceHandler(SimpleHTTPRequestHandler):
    """Files of one folder, each with the Space's headers; JavaScript modules and WebAssembly by their MIME types."""

    space_headers: dict[str, str] = {}
    quiet = False
    # Module scripts and WebAssembly's streaming compile refuse other types; a system's MIME table may lack them.
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def end_headers(self) -> None:
        for name, value in self.space_headers.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def preview_server(
    folder: str | Path, port: int = 8000, isolated: bool = True, quiet: bool = False
) -> ThreadingHTTPServer:
    """A server of folder on 127.0.0.1:port (0: any free port), with the card's headers unless isolated is False."""
    folder = Path(folder)
    if not (folder / "index.html").is_file():
        raise PathError(folder, "has no index.html: not a static Space's folder (helpers.make_space writes one)")
    headers = card_headers(folder) if isolated else {}
    handler = type("Handler", (SpaceHandler,), {"space_headers": headers, "quiet": quiet})
    return ThreadingHTTPServer(("127.0.0.1", port), functools.partial(handler, directory=str(folder)))
