"""Benchmarks that print numbers. Training is measured by running the notebook itself.

    python -m helpers.bench train --preset cpu        # tokens/s, MFU, peak memory of the notebook's loop
    python -m helpers.bench outcome --preset t4       # the notebook run to its end: epochs, minutes, best loss
    python -m helpers.bench gpu-check                 # on a CUDA machine: t4-like and a100 speed, save/resume
    python -m helpers.bench checkpoint-io             # GPT-2 124M: strip, load, and the stall of a save
    python -m helpers.bench generate                  # GPT-2 124M at batch 1, beside transformers' generate
    python -m helpers.bench space                     # GPT-2 124M's static Space in headless Chromium, beside PyTorch
    python -m helpers.bench prepare                   # a 100 MB text's token files, beside nanoGPT's prepare.py way
    python -m helpers.bench memorization              # GPT-2 124M: the memorization measure's cost, beside transformers

`train`, `outcome` and `gpu-check` run `notebooks/train_gpt2_124m_colab.py` as a plain script with
GPT2_* settings and read the `run_summary.json` it writes: what they measure is the code a user
runs. These are measurements, not tests: checkpoint-io prints each figure beside its limit with
PASS or OVER; the exit status is 0 unless something failed to run (gpu-check: or its resume
check failed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from helpers.checkpoints.storage import load_checkpoint
from helpers.commands.bench_checkpoint_io import bench_checkpoint_io
from helpers.commands.bench_generate import (
    CONTROLS,
    bench_controls,
    bench_generate,
    controls_report,
    generate_model,
    generate_report,
)
from helpers.commands.bench_memorization import bench_memorization
from helpers.commands.bench_prepare import bench_prepare
from helpers.commands.bench_space import PROMPT, bench_space, controls_cost, cpu_note, space_report, speedups
from helpers.commands.cli import fail
from helpers.config import PRESETS, detect_preset, make_config
from helpers.errors import PathError
from helpers.hf.static_space import EXPORTS
from helpers.ui.display import table

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_SCRIPT = REPO / "notebooks" / "train_gpt2_124m_colab.py"


# --- the notebook, run as a script ------------------------------------------------------------


def run_notebook(settings: dict[str, object], checkpoint_dir: Path, resume: str = "never") -> dict:
    """Run the notebook's .py with GPT2_* settings into checkpoint_dir; its run_summary.json, with wall time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPT2_") or k == "GPT2_DATA_URL"}
    env.update({f"GPT2_{name.upper()}": str(value) for name, value in settings.items()})
    env.update(GPT2_CHECKPOINT_DIR=str(checkpoint_dir), GPT2_RESUME=resume, MPLBACKEND="Agg")
    started = time.time()
    proc = subprocess.run([sys.executable, str(NOTEBOOK_SCRIPT)], env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{NOTEBOOK_SCRIPT.name} exited {proc.returncode}: {last}")
    summary_path = checkpoint_dir / "run_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}  # none when stopped early
    return dict(summary, wall_seconds=time.time() - started, stdout=proc.stdout)


def parse_settings(pairs: list[str]) -> dict[str, str]:
    """FIELD=VALUE pairs as a dict (checked by the notebook's own settings)."""
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {pair!r}: expected FIELD=VALUE, e.g. max_steps=100")
        settings[name.strip().lower()] = value
    return settings


def mfu(tokens_per_s: float, s: dict) -> float | None:
    """nanoGPT's MFU: the model's FLOPs per second over the hardware's peak (None where unknown)."""
    return tokens_per_s * s["flops_per_token"] / s["peak_flops"] if s.get("peak_flops") else None


# --- training speed -----------------------------------------------------------------------------


def bench_train(settings: dict[str, object], steps: int, warmup: int, work_dir: Path) -> dict:
    """The notebook's loop for warmup + steps steps, one log window a step; the timed steps' speed."""
    if steps < 1 or warmup < 1:
        raise ValueError("steps and warmup must be at least 1")
    total = warmup + steps
    s = run_notebook(
        dict(
            settings,
            max_steps=total,
            log_every=1,
            eval_every=total + 1,
            save_every=total + 1,
            save_every_minutes=0,
            patience=0,
            warmup_steps=min(warmup, total),
            sample_tokens=1,
        ),
        work_dir,
    )
    timed = s["speed_windows"][warmup:]  # the first steps pay for compilation and allocation
    seconds = sum(sec for _, sec in timed)
    tokens_per_s = sum(n for n, _ in timed) * s["tokens_per_step"] / seconds
    return dict(s, steps=steps, warmup=warmup, seconds=seconds, tokens_per_s=tokens_per_s, mfu=mfu(tokens_per_s, s))


def train_report(r: dict) -> str:
    """A bench_train result as an aligned table."""
    mfu_text = (
        f"{r['mfu']:.1%} of {r['peak_flops'] / 1e12:,.0f} TFLOP/s"
        if r["mfu"] is not None
        else "n/a (no peak FLOP/s known for this device)"
    )
    memory = (
        f"{r['peak_memory_gb']:.2f} GB (torch.cuda.max_memory_allocated)"
        if r["peak_memory_gb"] is not None
        else "n/a (CPU)"
    )
    return table(
        [
            ("preset", r["preset"]),
            ("device", f"{r['device']}, {r['dtype']}, {'compiled' if r['compiled'] else 'eager'}"),
            ("parameters", f"{r['parameters'] / 1e6:.2f}M"),
            ("tokens per step", f"{r['tokens_per_step']:,}"),
            (
                "timed steps",
                f"{r['steps']} after {r['warmup']} warm-up, {r['seconds']:.2f} s, "
                f"{1000 * r['seconds'] / r['steps']:.1f} ms per step",
            ),
            ("tokens/s", f"{r['tokens_per_s']:,.0f}"),
            ("MFU", mfu_text),
            ("peak GPU memory", memory),
        ]
    )


# --- the outcome: a run to its end ----------------------------------------------------------------


def outcome_report(s: dict) -> str:
    """The outcome of one run as a table."""
    tokens_per_s = s["session_steps"] * s["tokens_per_step"] / s["session_seconds"]
    speed_mfu = mfu(tokens_per_s, s)
    return table(
        [
            ("preset", f"{s['preset']} on {s['device']}, {s['parameters'] / 1e6:.2f}M parameters"),
            ("trained", f"{s['steps']} steps, {s['epochs']:.2f} epochs"),
            ("wall time", f"{s['wall_seconds'] / 60:.1f} min in all, {s['session_seconds'] / 60:.1f} min in the loop"),
            (
                "speed",
                f"{tokens_per_s:,.0f} tokens/s with evaluations" + (f", MFU {speed_mfu:.1%}" if speed_mfu else ""),
            ),
            ("peak memory", f"{s['peak_memory_gb']:.1f} GB" if s["peak_memory_gb"] is not None else "n/a (CPU)"),
            ("best val loss", f"{s['best_val_loss']:.4f} at step {s['best_step']}"),
            ("final pair", f"step {s['final_step']}, model_final.pt val loss {s['final_val_loss']:.4f}"),
            ("stopped", s["stop_reason"]),
        ]
    )


# --- the GPU machine check --------------------------------------------------------------------

# Where the notebook picks each preset: t4 below compute capability 8.0, a100 from 8.0 (bf16) up.
GPU_CASES = [
    ("t4-like: float16 + GradScaler, eager, 2 x 8 x 1024", dict(preset="t4", dtype="float16", compile=False), (0, 0)),
    (
        "t4-like, deterministic: the same with every kernel deterministic (its cost)",
        dict(preset="t4", dtype="float16", compile=False, deterministic=True),
        (0, 0),
    ),
    ("a100: bf16 + torch.compile, 16 x 1024", dict(preset="a100"), (8, 0)),
]
RESUME_CHECK = dict(
    preset="t4",
    compile=False,
    batch_size=2,
    grad_accum_steps=2,
    max_steps=6,
    eval_every=2,
    save_every=3,
    patience=0,
    sample_tokens=1,
    deterministic=True,  # so the resumed run must match bit for bit
)  # small enough for any GPU's memory


def resume_check(settings: dict[str, object], work_dir: Path) -> dict:
    """The notebook run straight through, and stopped half-way then resumed: their losses and weights compared."""
    straight = run_notebook(settings, work_dir / "straight")
    half = int(settings["max_steps"]) // 2
    run_notebook(dict(settings, stop_after_steps=half), work_dir / "resumed")
    resumed = run_notebook(settings, work_dir / "resumed", resume="auto")
    a, b = (load_checkpoint(work_dir / d / "model_final_full.pt") for d in ("straight", "resumed"))
    drift = max(
        (a["model_state_dict"][k].float() - b["model_state_dict"][k].float()).abs().max().item()
        for k in a["model_state_dict"]
    )
    pairs = list(zip(a["history"]["train"], b["history"]["train"]))
    loss_gap = max(abs(x[1] - y[1]) for x, y in pairs)
    # deterministic kernels repeat every bit; without them a GPU's sums may round differently
    limit = 0.0 if settings.get("deterministic") else 1e-3
    said = [line for line in straight["stdout"].splitlines() if line.startswith("deterministic: ")]
    return {
        "kernels": said[0] if said else "torch's defaults",
        "resumed_at": f"at step {half}" in resumed["stdout"],
        "steps": len(pairs),
        "loss_gap": loss_gap,
        "drift": drift,
        "limit": limit,
        "ok": f"at step {half}" in resumed["stdout"] and loss_gap <= limit and (drift == 0 or limit > 0),
        "device": straight["device"],
        "dtype": straight["dtype"],
    }


def gpu_check(cases: list, resume_settings: dict, steps: int, warmup: int, work_dir: Path) -> int:
    """Speed of each case and one stop/resume cycle, all through the notebook; 1 if anything failed, else 0."""
    failed = False
    capability = torch.cuda.get_device_capability() if torch.cuda.is_available() else None
    speeds = []  # (settings, tokens/s) of the cases that ran
    for i, (label, settings, min_capability) in enumerate(cases):
        print(f"\n== {label}")
        if capability and capability < min_capability:
            print(f"skipped: meant for compute capability {min_capability}+, this GPU has {capability}")
            continue
        try:
            r = bench_train(settings, steps, warmup, work_dir / f"case-{i}")
            print(train_report(r))
            speeds.append((settings, r["tokens_per_s"]))
        except RuntimeError as e:  # e.g. out of memory on a small GPU: report it and go on
            failed = True
            print(f"FAILED: {e}")
    for settings, speed in speeds:  # a deterministic case beside the same case without it
        plain = [s for other, s in speeds if other == {k: v for k, v in settings.items() if k != "deterministic"}]
        if settings.get("deterministic") and plain:
            print(f"\ndeterministic costs {1 - speed / plain[0]:.1%} of the tokens/s ({plain[0]:,.0f} -> {speed:,.0f})")
    print(f"\n== stop and resume: {', '.join(f'{k}={v}' for k, v in resume_settings.items())}")
    try:
        r = resume_check(resume_settings, work_dir / "resume")
    except RuntimeError as e:
        print(f"FAILED: {e}")
        return 1
    print(
        table(
            [
                ("device", f"{r['device']}, {r['dtype']}"),
                ("kernels", r["kernels"]),
                ("resumed", "from the half-way checkpoint" if r["resumed_at"] else "NOT from the half-way checkpoint"),
                (
                    "per-step losses",
                    f"{r['steps']} steps, largest difference {r['loss_gap']:.2e} (limit {r['limit']:g})",
                ),
                ("final weights", f"largest difference {r['drift']:.2e}" + (" (limit 0)" if r["limit"] == 0 else "")),
                ("result", "PASS" if r["ok"] else "FAIL"),
            ]
        )
    )
    return 1 if failed or not r["ok"] else 0


# --- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """The command line: parse argv, run, and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m helpers.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add_settings(command: argparse.ArgumentParser) -> None:
        command.add_argument("--preset", choices=list(PRESETS), help="default: by hardware")
        command.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help="any notebook setting, e.g. --set compile=false (repeatable)",
        )

    train = sub.add_parser("train", help="tokens/s, MFU and peak GPU memory of the notebook's training loop")
    add_settings(train)
    train.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    train.add_argument("--warmup", type=int, default=3, help="untimed steps first, at least 1 (default 3)")

    result = sub.add_parser(
        "outcome", help="run the notebook to its end on a preset; epochs, time, best loss, why it stopped"
    )
    add_settings(result)
    result.add_argument("--dir", type=Path, help="keep the run's checkpoints here (default: a temporary folder)")
    result.add_argument("--chart", type=Path, help="copy the run's loss chart (PNG) here")

    gpu = sub.add_parser("gpu-check", help="on a CUDA machine: t4-like and a100 speed, then a stop/resume cycle")
    gpu.add_argument("--steps", type=int, default=10, help="timed steps per case (default 10)")
    gpu.add_argument("--warmup", type=int, default=3, help="untimed steps per case (default 3)")

    io = sub.add_parser("checkpoint-io", help="GPT-2 124M: strip a full checkpoint, load a deployment one, save stall")
    io.add_argument("--dir", type=Path, help="where to write the files (default: a temporary folder); removed after")
    io.add_argument("--repeats", type=int, default=3, help="saves of each kind timed; medians compared (default 3)")

    gen = sub.add_parser(
        "generate", help="tokens/s, first token, memory: this GPT-2 and transformers' on the same weights"
    )
    gen.add_argument(
        "--tokens",
        type=int,
        nargs="+",
        default=[100, 200, 400],
        metavar="N",
        help="new tokens per generation, one or more lengths (default 100 200 400)",
    )
    gen.add_argument(
        "--prompt-tokens", type=int, default=6, metavar="P", help="prompt length, random tokens (default 6)"
    )
    gen.add_argument("--checkpoint", type=Path, help="a checkpoint's weights (default: GPT-2 124M, random weights)")
    gen.add_argument(
        "--repeats", type=int, default=3, help="alternating runs per model and length; the median counts (default 3)"
    )
    gen.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    gen.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="both models' weights (default float32)"
    )
    gen.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")

    space = sub.add_parser(
        "space",
        help="GPT-2 124M's static Space in headless Chromium: ready time, tokens/s per export, backend and threads, "
        "beside PyTorch on the same CPU",
    )
    space.add_argument(
        "--dtypes",
        nargs="+",
        choices=list(EXPORTS),
        default=list(EXPORTS),
        help="make_space --dtype of each folder built (default: int8 float32)",
    )
    space.add_argument(
        "--tokens",
        type=int,
        nargs="+",
        default=[100, 400],
        metavar="N",
        help="new tokens per generation (default 100 400)",
    )
    space.add_argument("--repeats", type=int, default=2, help="generations per length; the median counts (default 2)")
    space.add_argument("--checkpoint", type=Path, help="a checkpoint's weights (default: GPT-2 124M, random weights)")
    space.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        default=[],
        metavar="FOLDER",
        help="static Space folders made elsewhere (e.g. by an older version), measured too, without isolation",
    )
    space.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[],
        metavar="N",
        help="measure the isolated page with each of these thread counts (?threads=N; default: the page's choice)",
    )
    space.add_argument(
        "--webgpu-tokens",
        type=int,
        default=3,
        metavar="N",
        help="tokens generated on WebGPU (Chromium's software adapter here; default 3, 0: not at all)",
    )
    space.add_argument(
        "--dir", type=Path, help="where to build the folders (default: a temporary folder); removed after"
    )
    space.add_argument(
        "--controls",
        action="store_true",
        help="also measure the first export's isolated page and PyTorch with top-p 0.9 and repetition penalty 1.3 on",
    )

    prep = sub.add_parser(
        "prepare", help="a generated text's token files: time and peak memory, this project's and nanoGPT's prepare.py"
    )
    prep.add_argument("--mb", type=float, default=100, help="the generated text's size in MB (default 100)")
    prep.add_argument("--workers", type=int, help="this project's tokenising processes (default: one per core)")
    prep.add_argument("--repeats", type=int, default=1, help="runs of each way, taking turns; the median counts")
    prep.add_argument("--dir", type=Path, help="where to write the text (default: a temporary folder); removed after")

    memo = sub.add_parser("memorization", help="GPT-2 124M: the memorization measure's cost, beside transformers")
    memo.add_argument("--windows", type=int, default=64, help="windows from each split (default 64)")
    memo.add_argument("--samples", type=int, default=4, help="free samples (default 4)")
    memo.add_argument("--sample-tokens", type=int, default=256, help="tokens per free sample (default 256)")
    memo.add_argument("--batch", type=int, default=32, help="windows continued at once (default 32)")
    memo.add_argument("--checkpoint", type=Path, help="a checkpoint's weights (default: GPT-2 124M, random weights)")
    memo.add_argument("--device", default="cpu", help="cpu (default) or cuda")

    args = parser.parse_args(argv)
    if args.command == "prepare" and (args.mb <= 0 or (args.workers is not None and args.workers < 1)):
        parser.error("--mb must be above 0 and --workers at least 1")
    counts = []
    if args.command == "generate":
        counts = args.tokens + [args.prompt_tokens] + ([args.threads] if args.threads is not None else [])
    elif args.command == "space":
        counts = args.tokens + args.threads
    for n in counts:
        if n < 1:
            parser.error(f"--tokens, --prompt-tokens and --threads must be at least 1, not {n}")
    for name in ("steps", "warmup", "repeats", "windows", "samples", "sample_tokens", "batch"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    try:
        return run(args)
    except (ValueError, OSError, PathError, RuntimeError) as e:  # bad settings, a failed run: one line
        return fail(e, getattr(args, "dir", None) or getattr(args, "checkpoint", None))


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; its exit status."""
    if args.command in ("train", "outcome"):
        settings = dict(parse_settings(args.set), preset=args.preset or detect_preset())
        make_config(env={f"GPT2_{k.upper()}": str(v) for k, v in settings.items()})  # bad settings: fail here, at once
        with tempfile.TemporaryDirectory(prefix=f"bench-{args.command}-") as tmp:
            if args.command == "train":
                print(train_report(bench_train(settings, args.steps, args.warmup, Path(tmp))))
                return 0
            checkpoint_dir = args.dir or Path(tmp)
            print(outcome_report(run_notebook(settings, checkpoint_dir)))
            if args.chart:
                args.chart.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(checkpoint_dir / "loss.png", args.chart)
    elif args.command == "checkpoint-io":
        if args.dir:
            args.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-ckpt-", dir=args.dir) as tmp:
            print(table(bench_checkpoint_io(Path(tmp), args.repeats)))
    elif args.command == "generate":
        if args.threads:
            torch.set_num_threads(args.threads)
        model, what = generate_model(args.checkpoint, args.device, args.dtype)
        if args.prompt_tokens + max(args.tokens) > model.config.block_size:
            raise ValueError(f"--prompt-tokens plus --tokens passes the model's block_size {model.config.block_size}")
        import transformers

        print(
            generate_report(
                bench_generate(model, args.tokens, args.prompt_tokens, args.repeats),
                f"{what}, {args.dtype} on {args.device} ({torch.get_num_threads()} threads), batch 1, "
                f"prompt {args.prompt_tokens} tokens, greedy; median of {args.repeats} alternating runs; "
                f"torch {torch.__version__}, transformers {transformers.__version__}",
            )
        )
        print()
        print(
            controls_report(
                bench_controls(model, args.tokens, args.prompt_tokens, args.repeats),
                f"the sampling controls, seeded draws; median of {args.repeats} alternating runs; "
                + "; ".join(f"{name}: {controls}" for name, controls in CONTROLS.items()),
            )
        )
    elif args.command == "space":
        missing = [f for f in args.compare if not (f / "index.html").is_file()]
        if missing:  # before the minutes of building
            raise PathError(missing[0], "has no index.html: not a static Space's folder")
        model, what = generate_model(args.checkpoint, "cpu", "float32")
        if args.dir:
            args.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-space-", dir=args.dir) as tmp:
            lines, rows = bench_space(
                model,
                args.dtypes,
                args.tokens,
                args.repeats,
                Path(tmp),
                args.compare,
                args.threads,
                args.webgpu_tokens,
                args.controls,
            )
        title = (
            f"{what}; {cpu_note()}; prompt {PROMPT!r}, temperature 0.8, top-k 200 (the page's defaults); "
            f"tokens/s of whole generations, median of {args.repeats}; ms/tok: between tokens just before that count"
        )
        print(space_report(lines, rows, args.tokens, title))
        for line in speedups(rows, args.tokens, args.dtypes[0], args.compare) + controls_cost(rows, args.tokens):
            print(line)
    elif args.command == "prepare":
        if args.dir:
            args.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-prepare-", dir=args.dir) as tmp:
            print(table(bench_prepare(Path(tmp), args.mb, args.workers, args.repeats)))
    elif args.command == "memorization":
        from helpers.data import SHAKESPEARE_URL, load_splits, prepare_data

        model, what = generate_model(args.checkpoint, args.device, "float32")
        data_dir = Path(os.environ.get("GPT2_DATA_DIR", REPO / "data"))
        prepare_data(data_dir, os.environ.get("GPT2_DATA_URL", SHAKESPEARE_URL))
        train, val = load_splits(data_dir, model.config.block_size)
        rows = bench_memorization(model, train, val, args.windows, args.samples, args.sample_tokens, args.batch)
        print(f"{what} on {args.device} ({torch.get_num_threads()} threads), float32, tiny Shakespeare")
        print(table(rows))
    elif args.command == "gpu-check":
        if not torch.cuda.is_available():
            print("gpu-check needs a CUDA GPU; on a CPU try: python -m helpers.bench train --preset cpu")
            return 2
        with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
            return gpu_check(GPU_CASES, RESUME_CHECK, args.steps, args.warmup, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
