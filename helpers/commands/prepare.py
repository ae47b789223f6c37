"""Make a text's token files ahead of a run, as the notebook's Data cell does (for a big text, once).

    python -m helpers.prepare /content/texts                 # a folder: every .txt .md .jsonl .csv .tsv below it
    python -m helpers.prepare "books/*.txt" /content/data    # a glob, into another data folder
    python -m helpers.prepare export.csv --text-field body   # a CSV's column (or a JSON Lines field)

DATA is what DATA_URL names (a file, folder, glob or URL); DATA_DIR the run's data_dir (default:
the repository's data/, or GPT2_DATA_DIR). The token files go where the notebook looks for them,
`DATA_DIR/<name>-<hash>/`, so a run on the same text and settings reuses them. GPT2_TEXT_FIELD
and GPT2_DATA_ENCODING are read as the notebook reads them; the options win over them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from helpers.commands.cli import fail
from helpers.config import make_config
from helpers.data import prepare_data
from helpers.data_source import data_folder
from helpers.documents import Reading
from helpers.errors import PathError, SettingError

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    """The command line: parse argv, run, and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m helpers.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("data", help="the text: a file, a folder, a glob or an http(s) URL of one file")
    parser.add_argument(
        "data_dir", nargs="?", type=Path, help="the run's data_dir (default: GPT2_DATA_DIR, else data/)"
    )
    parser.add_argument("--text-field", help="the JSON Lines field or CSV column of the text (default: text)")
    parser.add_argument("--encoding", help="the files' encoding, any Python codec (default: UTF-8, UTF-16 by BOM)")
    parser.add_argument("--workers", type=int, help="tokenising processes (default: one per core)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers {args.workers}: must be at least 1")
    env = {"GPT2_DATA_URL": args.data}
    for name, value in (("GPT2_TEXT_FIELD", args.text_field), ("GPT2_DATA_ENCODING", args.encoding)):
        if value is not None or name in os.environ:
            env[name] = value if value is not None else os.environ[name]
    try:
        cfg = make_config("cpu", env=env)  # the settings' own checks: an unknown encoding is one line
        reading = Reading(cfg.text_field, cfg.data_encoding)
        data_dir = REPO / (args.data_dir or os.environ.get("GPT2_DATA_DIR", "data"))  # an absolute path stays
        folder = data_folder(data_dir, cfg.data_url, reading)
        meta = prepare_data(folder, cfg.data_url, reading, workers=args.workers)
    except (PathError, SettingError, OSError) as e:
        return fail(e, args.data)
    print(
        f"{meta['text']}: train {meta['train_tokens']:,} tokens, val {meta['val_tokens']:,} tokens, "
        f"{meta.get('documents', 1):,} document(s) split by {meta.get('split', 'characters')}"
        f"{' (reused)' if meta['reused'] else ''}: {folder}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
