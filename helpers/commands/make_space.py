"""Turn a checkpoint into a Hugging Face Space (Gradio) that tries the model, and optionally upload it.

    python -m helpers.make_space checkpoints/model_final.pt space
    python -m helpers.make_space checkpoints/model_final.pt space --force --push you/gpt2-shakespeare

What the folder holds is helpers.space's docstring. `cd OUT_DIR && python app.py` runs it as the
Space will.
"""

from __future__ import annotations

import sys

from helpers.commands.cli import fail, folder_tool_parser, notes_printed, push
from helpers.errors import PathError
from helpers.space import FORMATS, make_space


def main(argv: list[str] | None = None) -> int:
    """The command line: parse argv, run, and return the exit status."""
    parser = folder_tool_parser("python -m helpers.make_space", "Write a Hugging Face Space (Gradio) that serves a checkpoint.",
                                "then create this Space (USER/SPACE) and upload the folder (needs HF_TOKEN)")
    parser.add_argument("--format", dest="fmt", choices=list(FORMATS), default="pt", help="model_final.pt (default) or model_final.safetensors")
    args = parser.parse_args(argv)
    try:
        with notes_printed():
            out_dir = make_space(args.checkpoint, args.out_dir, args.force, args.dtype, args.fmt)
    except (PathError, OSError, ValueError) as e:
        return fail(e, args.out_dir)
    print(f"wrote {out_dir}: {', '.join(sorted(p.name for p in out_dir.iterdir()))}")
    print(f"try it: cd {out_dir} && pip install -r requirements.txt && python app.py")
    return push(out_dir, args.push, "space") if args.push else 0


if __name__ == "__main__":
    sys.exit(main())
