"""Turn a checkpoint into a Hugging Face Space that tries the model, and optionally upload it.

    python -m helpers.make_space checkpoints/model_final.pt space                      # static: free for everyone
    python -m helpers.make_space --serve space                                         # try it as the Space serves it
    python -m helpers.make_space checkpoints/model_final.pt space --push you/gpt2-shakespeare
    python -m helpers.make_space checkpoints/model_final.pt space --kind gradio [--hardware zero-gpu]

--kind static (the default): a web page that runs the model in the visitor's browser
(helpers.hf.static_space); --kind gradio: the Python app (helpers.hf.space), which Hugging Face hosts on
cpu-basic for PRO accounts only, and on ZeroGPU for established free accounts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers.checkpoints.format import DTYPES
from helpers.commands.cli import fail, folder_tool_parser, notes_printed, push
from helpers.errors import PathError
from helpers.hf.preview import preview_server
from helpers.hf.space import FORMATS, HARDWARE, make_space
from helpers.hf.static_space import EXPORTS, make_static_space, space_address

KINDS = ("static", "gradio")
DEFAULT_DTYPE = {"static": "int8", "gradio": "float32"}


def serve(folder: Path, port: int) -> int:
    """--serve: the static Space's folder on 127.0.0.1:port with its card's headers, until Ctrl-C; the exit status."""
    try:
        server = preview_server(folder, port)
    except (PathError, OSError) as e:  # not a Space's folder, the port taken
        return fail(e, folder)
    headers = ", ".join(server.RequestHandlerClass.func.space_headers) or "no custom_headers in the card"
    print(f"serving {folder} at http://127.0.0.1:{server.server_address[1]}/ ({headers}); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line: parse argv, run, and return the exit status."""
    # --serve FOLDER stands alone (no CHECKPOINT OUT_DIR): read it before the folder tools' parser.
    early = argparse.ArgumentParser(prog="python -m helpers.make_space", add_help=False)
    early.add_argument("--serve", type=Path, metavar="FOLDER")
    early.add_argument("--port", type=int, default=8000)
    known, rest = early.parse_known_args(argv)
    if known.serve is not None:
        if rest:
            early.error(f"--serve FOLDER takes only --port, not {' '.join(rest)}")
        return serve(known.serve, known.port)
    parser = folder_tool_parser(
        "python -m helpers.make_space",
        "Write a Hugging Face Space that serves a checkpoint.",
        "then create this Space (USER/SPACE) and upload the folder (needs HF_TOKEN)",
        dtypes=sorted({*EXPORTS, *DTYPES}),
        dtype_help="static: int8 (default: int8 ONNX for WebAssembly, float16 for WebGPU) or float32 (one file for "
        "both); gradio: float32 (default), float16 or bfloat16 weights",
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
    parser.add_argument(
        "--serve",
        metavar="FOLDER",
        help="alone (no CHECKPOINT OUT_DIR): serve a static Space's folder on 127.0.0.1 with the headers its card "
        "asks Hugging Face for, as the Space serves it (--port, default 8000)",
    )
    args = parser.parse_args(argv)
    dtype = args.dtype or DEFAULT_DTYPE[args.kind]
    allowed = tuple(EXPORTS) if args.kind == "static" else tuple(DTYPES)
    if dtype not in allowed:
        parser.error(f"--dtype {dtype} is not for --kind {args.kind} (choose {', '.join(allowed)})")
    if args.kind == "static" and (args.hardware != "cpu-basic" or args.fmt != "pt"):
        parser.error("--hardware and --format are for --kind gradio; a static Space runs in the browser")
    try:
        with notes_printed():
            if args.kind == "static":
                out_dir = make_static_space(args.checkpoint, args.out_dir, args.force, dtype, repo=args.push or "")
            else:
                out_dir = make_space(args.checkpoint, args.out_dir, args.force, dtype, args.fmt, hardware=args.hardware)
    except (PathError, OSError, ValueError, ImportError) as e:
        return fail(e, args.out_dir)
    print(f"wrote {out_dir}: {', '.join(sorted(p.name for p in out_dir.iterdir()))}")
    if args.kind == "static":
        print(f"try it: python -m helpers.make_space --serve {out_dir}, then open http://127.0.0.1:8000")
    else:
        print(f"try it: cd {out_dir} && pip install -r requirements.txt && python app.py")
    status = push(out_dir, args.push, "space") if args.push else 0
    if args.push and args.kind == "static" and status == 0:
        print(f"its own address, where the page runs on all the visitor's threads: {space_address(args.push)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
