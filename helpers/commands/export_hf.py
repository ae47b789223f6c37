"""Export a checkpoint as a Hugging Face transformers GPT-2 folder (and optionally upload it).

    python -m helpers.export_hf checkpoints/model_final.pt hf_model
    python -m helpers.export_hf checkpoints/model_best.pt hf_model --force --push user/gpt2-shakespeare

The checkpoint may be full or deployment, .pt or .safetensors, any precision. The folder holds
config.json, model.safetensors and GPT-2's tokenizer files (from tiktoken's cache), and loads
with `GPT2LMHeadModel.from_pretrained(folder)` or `pipeline("text-generation", model=folder)`.
It is written beside OUT_DIR and renamed into place, so it is never left half written.
"""

from __future__ import annotations

import sys

from helpers.commands.cli import fail, folder_tool_parser, notes_printed, push
from helpers.errors import PathError
from helpers.hf.folders import export_hf


def main(argv: list[str] | None = None) -> int:
    """The command line: parse argv, run, and return the exit status."""
    parser = folder_tool_parser(
        "python -m helpers.export_hf",
        "Export a checkpoint as a Hugging Face transformers GPT-2 folder.",
        "then upload the folder to this Hub repository (needs HF_TOKEN)",
    )
    args = parser.parse_args(argv)
    try:
        with notes_printed():
            out_dir = export_hf(args.checkpoint, args.out_dir, args.force, args.dtype)
    except (PathError, OSError) as e:
        return fail(e, args.out_dir)
    print(f"wrote {out_dir}: {', '.join(sorted(p.name for p in out_dir.iterdir()))}")
    return push(out_dir, args.push, "model") if args.push else 0


if __name__ == "__main__":
    sys.exit(main())
