"""`python -m helpers.bench prepare`: the token files of a generated text of about 100 MB, made two ways, timed.

This project's prepare_data (read and tokenised in a stream, on every core) beside nanoGPT's
prepare.py method (the whole text read, one encode_ordinary per split, a Python list of every
token, then np.array), each in a fresh process (this module's child-ours and child-nanogpt), so
that its time and peak memory are its own: wall time from the process's start to its end (the
imports included), and peak memory: the process tree's proportional set size (PSS, pages shared
between a process and its forked workers counted once), sampled every 50 ms, beside the main
process's peak resident memory (VmHWM). Both must write the same token files.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MB = 1e6


def make_corpus(path: Path, size_mb: float, seed: int = 0) -> int:
    """Write about size_mb MB of text at path: tiny Shakespeare's lines, shuffled again and again; its bytes."""
    from helpers.config import SHAKESPEARE_URL
    from helpers.data_source import download, local_source

    url = os.environ.get("GPT2_DATA_URL", SHAKESPEARE_URL)
    local = local_source(url)
    if local is None:
        with open(path, "wb") as f:
            download(url, f)
    plays = (local or path).read_text(encoding="utf-8")
    lines = np.array(plays.splitlines(keepends=True), dtype=object)
    rng, written = np.random.default_rng(seed), 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size_mb * MB:
            block = "".join(lines[rng.permutation(len(lines))])
            f.write(block)
            written += len(block.encode())
    return path.stat().st_size


def peak_rss() -> int:
    """This process's peak resident memory so far, in bytes (VmHWM: Linux's ru_maxrss would include a parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # macOS and others: kilobytes on Linux


def nanogpt_prepare(text_path: Path, out_dir: Path) -> float:
    """nanoGPT's data/shakespeare/prepare.py way: the whole text in memory, an encode per split, a list, an array.

    Returns when its imports were done (perf_counter), as ours_prepare.
    """
    import tiktoken

    imported = time.perf_counter()
    data = text_path.read_text(encoding="utf-8")
    n = len(data)
    enc = tiktoken.get_encoding("gpt2")
    for split, part in (("train", data[: int(n * 0.9)]), ("val", data[int(n * 0.9) :])):
        ids = enc.encode_ordinary(part)
        np.array(ids, dtype=np.uint16).tofile(out_dir / f"{split}.bin")
    return imported


def ours_prepare(text_path: Path, out_dir: Path, workers: int | None) -> float:
    """This project's way: prepare_data, as the Data cell and python -m helpers.prepare run it (torch imported)."""
    os.environ["TQDM_DISABLE"] = "1"  # no bar in a measurement
    from helpers.data import prepare_data

    imported = time.perf_counter()
    prepare_data(out_dir, str(text_path), workers=workers)
    return imported


def run_child(way: str, text_path: Path, out_dir: Path, workers: int | None) -> dict:
    """Run one way in a fresh interpreter; its wall time, peak RSS and the sha256 of the token files it wrote."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    args = [sys.executable, "-m", __spec__.name, f"child-{way}", str(text_path), str(out_dir), str(workers or 0)]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=err, text=True)
        peak_pss = 0
        while proc.poll() is None:  # the whole process tree's memory, its workers' included
            peak_pss = max(peak_pss, tree_pss(proc.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{__spec__.name} child-{way} exited {proc.returncode}: {stderr.strip()[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    digests = {split: hashlib.sha256((out_dir / f"{split}.bin").read_bytes()).hexdigest() for split in ("train", "val")}
    return dict(result, seconds=seconds, digests=digests, peak_pss=peak_pss)


def tree_pss(pid: int) -> int:
    """The proportional set size of a process and its descendants, in bytes: memory they share counted once (Linux)."""
    total, pending = 0, [pid]
    while pending:
        pid = pending.pop()
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            pending += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except (OSError, ValueError):  # gone meanwhile, or not Linux
            continue
        total += next((int(line.split()[1]) * 1024 for line in rollup.splitlines() if line.startswith("Pss:")), 0)
    return total


def median_run(runs: list[dict]) -> dict:
    """The run of median time (the upper one of two), whose peak memory goes with it."""
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def bench_prepare(
    work_dir: Path, size_mb: float, workers: int | None = None, repeats: int = 1
) -> list[tuple[str, str]]:
    """The table's rows: the corpus, then time and peak memory of each way (median of repeats runs), and their ratios.

    The two ways take turns, so that a machine busy with other work slows both alike.
    """
    text_path = work_dir / "corpus.txt"
    size = make_corpus(text_path, size_mb)
    runs: dict[str, list[dict]] = {"ours": [], "nanogpt": []}
    for _ in range(repeats):
        for way in runs:
            runs[way].append(run_child(way, text_path, work_dir / f"{way}-{len(runs[way])}", workers))
            if runs[way][-1]["digests"] != runs["ours"][0]["digests"]:
                raise RuntimeError("the two ways wrote different token files")
    ours, theirs = median_run(runs["ours"]), median_run(runs["nanogpt"])
    meta = json.loads((work_dir / "ours-0" / "meta.json").read_text())
    tokens = meta["train_tokens"] + meta["val_tokens"]
    return [
        ("corpus", f"{size / MB:.1f} MB, {tokens:,} tokens; the same token files both ways"),
        ("cores", f"{os.cpu_count()} (workers: {workers or os.cpu_count()}); median of {repeats} turns each"),
        ("this project: time", f"{ours['seconds']:.1f} s ({ours['work_seconds']:.1f} s after its imports)"),
        ("nanoGPT prepare.py: time", f"{theirs['seconds']:.1f} s ({theirs['work_seconds']:.1f} s after its imports)"),
        (
            "speed-up",
            f"{theirs['seconds'] / ours['seconds']:.2f}x ({theirs['work_seconds'] / ours['work_seconds']:.2f}x "
            "after the imports; goal: at least 1.5x)",
        ),
        (
            "this project: peak memory",
            f"{ours['peak_pss'] / MB:,.0f} MB ({ours['peak_rss'] / MB:,.0f} MB main process)",
        ),
        ("nanoGPT prepare.py: peak memory", f"{theirs['peak_pss'] / MB:,.0f} MB ({theirs['peak_rss'] / MB:,.0f} MB)"),
        ("memory", f"{ours['peak_pss'] / theirs['peak_pss']:.2f} of nanoGPT's (goal: at most 0.5)"),
    ]


def child(way: str, text_path: str, out_dir: str, workers: str) -> None:
    """In a fresh process: make the token files one way, then print its peak RSS and time after imports as JSON."""
    if way == "child-ours":
        imported = ours_prepare(Path(text_path), Path(out_dir), int(workers) or None)
    else:
        imported = nanogpt_prepare(Path(text_path), Path(out_dir))
    print(json.dumps({"peak_rss": peak_rss(), "work_seconds": time.perf_counter() - imported}))


if __name__ == "__main__":
    child(*sys.argv[1:5])
