"""Check that a deployment checkpoint loads, matches its full checkpoint, and generates text.

    python -m helpers.test_deployment_checkpoint checkpoints/model_final.pt --full checkpoints/model_final_full.pt
    python -m helpers.test_deployment_checkpoint model_final.safetensors --full checkpoints/model_final_full.pt

It loads the file the way the deployment snippet of docs/checkpoints.md does, compares every
tensor with the full checkpoint's when --full is given (bit for bit in float32, to the dtype's
rounding in half precision), generates text from a prompt (with helpers.sample's controls), and
prints sizes and load time. The exit status is 0 only when every check passed; each failed check is named.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from helpers.checkpoints.format import (
    DEPLOYMENT,
    FULL,
    WRONG_KIND,
    check_checkpoint,
    checkpoint_kind,
    clean_state_dict,
    model_config_of,
)
from helpers.checkpoints.storage import load_checkpoint, load_weights, read_checkpoint
from helpers.commands.sample import add_sampling_arguments, sampling_options
from helpers.errors import CheckpointError
from helpers.model import GPT


def compare_weights(deploy: dict, full: dict) -> list[str]:
    """Problems found comparing a deployment state dict with its full checkpoint's (none: equal)."""
    problems = []
    for key in sorted(full.keys() - deploy.keys()):
        problems.append(f"tensor {key}: missing from the deployment checkpoint")
    for key in sorted(deploy.keys() - full.keys()):
        problems.append(f"tensor {key}: not in the full checkpoint")
    for key in sorted(full.keys() & deploy.keys()):
        want, got = full[key], deploy[key]
        if want.shape != got.shape:
            problems.append(f"tensor {key}: shape {tuple(got.shape)}, full checkpoint has {tuple(want.shape)}")
        elif not torch.equal(want.to(got.dtype), got):  # exact in float32; the rounded value in half precision
            diff = (want.float() - got.float()).abs().max().item()
            problems.append(f"tensor {key}: differs from the full checkpoint (max abs difference {diff:.3g})")
    return problems


def run_checks(
    deploy_path: Path,
    full_path: Path | None,
    prompt: str,
    tokens: int,
    seed: int,
    failures: list[str],
    sampling: dict | None = None,
) -> list[str]:
    """Run every check, printing progress and adding each failed check to failures; return them.

    sampling: generate's controls and stop (helpers.commands.sample.sampling_options); else temperature 0.8, top-k 200.
    """
    t0 = time.perf_counter()
    # As the deployment snippet (docs/checkpoints.md): torch.load(path, map_location="cpu"), then GPT(GPTConfig(...)).
    # A .safetensors file: tensors and JSON metadata; the tied embedding comes back tied.
    ckpt = check_checkpoint(deploy_path, read_checkpoint(deploy_path, mmap=False))
    if checkpoint_kind(ckpt) != DEPLOYMENT:
        failures.append(f"{deploy_path}: {WRONG_KIND[checkpoint_kind(ckpt)]}; a deployment checkpoint is needed here")
    model = GPT(model_config_of(deploy_path, ckpt))
    state = ckpt["model_state_dict"] = clean_state_dict(ckpt["model_state_dict"])
    load_weights(model, deploy_path, ckpt)  # strict, as the snippet's load_state_dict
    model.eval()
    load_s = time.perf_counter() - t0
    loss = f"{ckpt['loss']:.4f}" if isinstance(ckpt["loss"], (int, float)) else repr(ckpt["loss"])
    print(
        f"{deploy_path}: {deploy_path.stat().st_size / 1e6:,.1f} MB, loaded in {load_s:.2f} s "
        f"(step {ckpt['step']}, loss {loss}, {model.num_params() / 1e6:.2f}M parameters)"
    )
    if full_path is not None:
        full = load_checkpoint(full_path, kind=FULL)
        print(f"{full_path}: {full_path.stat().st_size / 1e6:,.1f} MB")
        problems = compare_weights(state, full["model_state_dict"])
        failures += [f"{deploy_path}: {p}" for p in problems]
        if not problems:
            print(f"all {len(state)} tensors equal the full checkpoint's")
    from helpers.data import get_encoding
    from helpers.sampling import text_stream

    enc = get_encoding()
    ids = enc.encode(prompt or "\n")  # an empty prompt starts a new line
    controls = dict(temperature=0.8, top_k=200, stop=()) | (sampling or {})
    stop = controls.pop("stop")
    stream = model.generate_stream(torch.tensor([ids], dtype=torch.long), tokens, seed=seed, **controls)
    drawn = []  # the tokens generated, counted on their way to the text
    text = "".join(text_stream(ids, (drawn.append(t) or t for t in stream), enc.decode, stop))
    print(f"--- sample (seed {seed}) ---\n{text}\n---")
    if len(drawn) != tokens and not stop:  # a stop string may end it sooner
        failures.append(f"{deploy_path}: generated {len(drawn)} tokens, asked for {tokens}")
    return failures


def main(argv: list[str] | None = None) -> int:
    """The command line: parse argv, run, and return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.test_deployment_checkpoint", description="Verify a deployment checkpoint."
    )
    parser.add_argument(
        "deploy", type=Path, help="deployment checkpoint (model_final.pt, model_best.pt, or a .safetensors one)"
    )
    parser.add_argument("--full", type=Path, help="the full checkpoint it came from, to compare every tensor")
    parser.add_argument("--prompt", default="ROMEO:", help="text to continue (default ROMEO:)")
    parser.add_argument("--tokens", type=int, default=50, help="tokens to generate (default 50)")
    parser.add_argument("--seed", type=int, default=1337, help="sampling seed (default 1337)")
    add_sampling_arguments(parser)
    args = parser.parse_args(argv)
    if args.tokens < 1:
        parser.error(f"--tokens {args.tokens}: must be at least 1")
    sampling = sampling_options(parser, args)
    failures: list[str] = []
    try:
        run_checks(args.deploy, args.full, args.prompt, args.tokens, args.seed, failures, sampling)
    except CheckpointError as e:  # a check that stops the rest; those that failed before still count
        failures.append(str(e))
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
