"""Continue a prompt with a checkpoint's model, printing the text as it is generated (nanoGPT's sample.py).

    python -m helpers.sample checkpoints/model_final.pt
    python -m helpers.sample checkpoints/model_best.pt --prompt "JULIET:" --tokens 300 --top-p 0.9 \
        --repetition-penalty 1.2 --stop '\n\n'

CHECKPOINT is any checkpoint the project writes (full or deployment, .pt or .safetensors, any
precision) or a transformers GPT-2 folder (helpers.export_hf's). The controls are generate's, in
transformers' order (docs/sampling.md); the defaults are the notebook's: temperature 0.8, top-k 200,
top-p and the repetition penalty off. Each --stop ends the text before its first occurrence in
the continuation (`\n` in it is a newline).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers.commands.cli import fail
from helpers.errors import PathError, SettingError


def load(source: Path, device: str):
    """The model of a checkpoint file or of a transformers folder, in eval mode on device."""
    from helpers.checkpoints.storage import load_model
    from helpers.hf.folders import load_hf_gpt2

    if source.is_dir():
        return load_hf_gpt2(source).to(device).eval()
    return load_model(source, device)[0]


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """The sampling controls as options: --temperature --top-k --top-p --repetition-penalty --stop --seed."""
    parser.add_argument("--temperature", type=float, default=0.8, help="above 0; lower is safer (default 0.8)")
    parser.add_argument(
        "--top-k", type=int, default=200, help="draw among the k likeliest tokens; 0: all (default 200)"
    )
    parser.add_argument(
        "--top-p", type=float, default=None, help="draw among the likeliest tokens holding this much probability (0-1]"
    )
    parser.add_argument(
        "--repetition-penalty", type=float, default=None, help="above 1 makes the tokens of the text so far less likely"
    )
    parser.add_argument(
        "--stop", nargs="+", default=[], metavar="STR", help="end the text before any of these (\\n: a newline)"
    )


def sampling_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The parsed controls as sample_stream's keyword arguments; a usage error (exit 2) for one out of range."""
    from helpers.model import check_sampling
    from helpers.sampling import unescape_stop

    try:
        check_sampling(args.temperature, args.top_k, args.top_p, args.repetition_penalty)
    except ValueError as e:  # "top_p must be ...": named as the option is
        name, problem = str(e).split(" ", 1)
        parser.error(f"--{name.replace('_', '-')} {problem}")
    stop = [unescape_stop(s) for s in args.stop]
    if not all(stop):
        parser.error("--stop: a stop string must be some text")
    return dict(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        stop=stop,
    )


def main(argv: list[str] | None = None) -> int:
    """The command line: parse argv, print the sample as it comes, and return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.sample", description="Continue a prompt with a checkpoint's model."
    )
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="model_final.pt, model_best.pt, a full or .safetensors one, or a transformers folder",
    )
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a new line)")
    parser.add_argument("--tokens", type=int, default=500, help="most tokens to generate (default 500)")
    add_sampling_arguments(parser)
    parser.add_argument("--seed", type=int, default=None, help="the same seed gives the same text (default: random)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: the GPU if there is one)")
    args = parser.parse_args(argv)
    if args.tokens < 1:
        parser.error(f"--tokens {args.tokens}: must be at least 1")
    options = sampling_options(parser, args)
    import torch

    from helpers.data import get_encoding
    from helpers.training.hardware import detect_hardware
    from helpers.ui.playground import sample_stream

    try:
        device = detect_hardware(args.device, "float32").device
        model = load(args.checkpoint, device)
    except (PathError, SettingError, OSError) as e:
        return fail(e, args.checkpoint)
    seed = args.seed if args.seed is not None else torch.seed() % 2**32  # else every run would draw the same
    pieces = sample_stream(model, get_encoding(), args.prompt, args.tokens, device=device, seed=seed, **options)
    try:
        for piece in pieces:
            print(piece, end="", flush=True)
    except KeyboardInterrupt:  # Ctrl-C: the text so far is the sample
        print()
        return 130
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
