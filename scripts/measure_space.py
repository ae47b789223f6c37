"""What a Space of GPT-2 124M costs on this CPU: start-up time, memory, and generations of 100 and 500 tokens.

    bash -c 'source scripts/env.sh requirements-dev.txt && python scripts/measure_space.py'

A randomly initialised GPT-2 124M, saved by the project's own code as a deployment checkpoint,
becomes a Space (helpers.make_space); its `python app.py` is timed from start until it serves
the page, its peak RSS read from /proc, and generations timed through gradio_client as they
stream: until the first generated token shows, and until the whole text is there.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from helpers.commands.bench_space import random_checkpoint  # noqa: E402
from helpers.hf.space import make_space  # noqa: E402
from helpers.model import GPT, GPTConfig  # noqa: E402


def peak_rss_gb(pid: int) -> float:
    """VmHWM: the process's peak resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError("no VmHWM")


def timed_generation(client: object, tokens: int, seed: int) -> tuple[float, float, int]:
    """One generation through the API, as it streams: seconds to the first generated token, to the end; updates."""
    start = time.perf_counter()
    job = client.submit("ROMEO:", tokens, 0.8, 200, seed, api_name="/generate")
    first, updates = None, 0
    for text in job:  # the prompt first, then the text a token longer each time
        updates += 1
        if first is None and text != "ROMEO:":
            first = time.perf_counter() - start
    return first, time.perf_counter() - start, updates


def main() -> None:
    """Build the 124M Space, start it, time it, print the numbers."""
    from gradio_client import Client

    root = Path(tempfile.mkdtemp(prefix="space-measure-"))
    torch.manual_seed(0)
    ckpt = random_checkpoint(GPT(GPTConfig()), root)  # GPT-2 124M, random weights
    space = make_space(ckpt, root / "space")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TIKTOKEN_CACHE_DIR")}
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port))
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=space, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit(f"app.py exited {proc.returncode}")
                time.sleep(0.1)
        ready = time.perf_counter() - start
        rss_ready = peak_rss_gb(proc.pid)
        client = Client(url, verbose=False)
        runs = {
            100: [timed_generation(client, 100, seed) for seed in (1, 2, 3)],
            500: [timed_generation(client, 500, 4)],
        }
        size = (space / "model_final.pt").stat().st_size
        print(f"checkpoint          {size / 1e6:,.0f} MB (model_final.pt, float32)")
        print(f"start until serving {ready:.1f} s (python app.py: imports, load, page)")
        print(f"peak RSS serving    {rss_ready:.2f} GB")
        for tokens, results in runs.items():
            firsts = ", ".join(f"{first:.2f}" for first, _, _ in results)
            totals = ", ".join(f"{total:.1f}" for _, total, _ in results)
            print(
                f"{f'{tokens} tokens':<20}first token {firsts} s, whole text {totals} s "
                f"({len(results)} generation{'s' * (len(results) > 1)}, {results[0][2]} updates streamed, "
                f"{os.cpu_count()} CPUs)"
            )
        print(f"peak RSS after      {peak_rss_gb(proc.pid):.2f} GB")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
