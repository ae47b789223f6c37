"""Turn a checkpoint into a Hugging Face Space that tries the model, and optionally upload it.

    python -m helpers.make_space checkpoints/model_final.pt space                      # static: free for everyone
    python -m helpers.make_space checkpoints/model_final.pt space --push you/gpt2-shakespeare
    python -m helpers.make_space checkpoints/model_final.pt space --kind gradio [--hardware zero-gpu]

--kind static (the default): a web page that runs the model in the visitor's browser
(helpers.hf.static_space); --kind gradio: the Python app (helpers.hf.space), which Hugging Face hosts on
cpu-basic for PRO accounts only, and on ZeroGPU for established free accounts.
"""

from __future__ import annotations

import sys

from helpers.checkpoints.format import DTYPES
from helpers.commands.cli import fail, folder_tool_parser, notes_printed, push
from helpers.errors import PathError
from helpers.hf.onnx_export import ONNX_DTYPES
from helpers.hf.space import FORMATS, HARDWARE, make_space
from helpers.hf.static_space import make_static_space

KINDS = ("static", "gradio")
DEFAULT_DTYPE = {"static": "int8", "gradio": "float32"}


def main(argv: list[str] | None = None) -> int:
    """The command line: parse argv, run, and return the exit status."""
    parser = folder_tool_parser(
        "python -m helpers.make_space",
        "Write a Hugging Face Space that serves a checkpoint.",
        "then create this Space (USER/SPACE) and upload the folder (needs HF_TOKEN)",
        dtypes=sorted({*ONNX_DTYPES, *DTYPES}),
        dtype_help="static: int8 (default) or float32 ONNX; gradio: float32 (default), float16 or bfloat16 weights",
    )
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="static",
        help="static (default): the model runs in the visitor's browser, free to host for every account; "
        "gradio: a Python app on Hugging Face's hardware",
    )
    parser.add_argument(
        "--hardware",
        choices=list(HARDWARE),
        default="cpu-basic",
        help="gradio only: cpu-basic (default; a PRO account) or zero-gpu (@spaces.GPU)",
    )
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=list(FORMATS),
        default="pt",
        help="gradio only: model_final.pt (default) or model_final.safetensors",
    )
    args = parser.parse_args(argv)
    dtype = args.dtype or DEFAULT_DTYPE[args.kind]
    allowed = ONNX_DTYPES if args.kind == "static" else tuple(DTYPES)
    if dtype not in allowed:
        parser.error(f"--dtype {dtype} is not for --kind {args.kind} (choose {', '.join(allowed)})")
    if args.kind == "static" and (args.hardware != "cpu-basic" or args.fmt != "pt"):
        parser.error("--hardware and --format are for --kind gradio; a static Space runs in the browser")
    try:
        with notes_printed():
            if args.kind == "static":
                out_dir = make_static_space(args.checkpoint, args.out_dir, args.force, dtype)
            else:
                out_dir = make_space(args.checkpoint, args.out_dir, args.force, dtype, args.fmt, hardware=args.hardware)
    except (PathError, OSError, ValueError, ImportError) as e:
        return fail(e, args.out_dir)
    print(f"wrote {out_dir}: {', '.join(sorted(p.name for p in out_dir.iterdir()))}")
    if args.kind == "static":
        print(f"try it: cd {out_dir} && python -m http.server, then open http://127.0.0.1:8000")
    else:
        print(f"try it: cd {out_dir} && pip install -r requirements.txt && python app.py")
    return push(out_dir, args.push, "space") if args.push else 0


if __name__ == "__main__":
    sys.exit(main())
