"""bench space: the static Space's page in a headless Chromium on this machine, beside PyTorch on the same CPU.

For each export (--dtypes) the folder is built by helpers.make_space, served on 127.0.0.1 by
helpers.hf.preview with the card's isolation headers (WebAssembly threads) and without (one
thread), and the page is opened for each backend: time until ready (download from 127.0.0.1,
compile, start), then tokens/s of whole generations of each length (the page's defaults:
temperature 0.8, top-k 200) and the time per token near the end of each. --compare adds folders
made elsewhere (e.g. by an older version of the project), served without the headers. Chromium
can reach nothing but 127.0.0.1. WebGPU runs on Chromium's software adapter here (SwiftShader):
it shows that the page runs, not how fast a GPU is, so it is timed over a few tokens only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import torch

from helpers.checkpoints.format import DEPLOYMENT, make_checkpoint
from helpers.checkpoints.storage import save_checkpoint
from helpers.data import get_encoding
from helpers.hf.js_runtime import PACKAGES
from helpers.hf.preview import preview_server
from helpers.hf.static_space import STATIC, make_static_space
from helpers.model import GPT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Chromium may reach 127.0.0.1 only: every other name resolves to nothing, and any other address
# goes through a proxy that is not there (loopback always bypasses a proxy).
OFFLINE = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9")
# Chromium's WebGPU on its software adapter, which every machine has (headless Chromium has no other here).
SOFTWARE_WEBGPU = ("--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader")
PROMPT, TEMPERATURE, TOP_K = "ROMEO:", 0.8, 200  # the page's defaults
CONTROLS = {"top_p": 0.9, "repetition_penalty": 1.3}  # --controls: the other sampling controls on, as bench generate's


def chromium(*flags: str):
    """A headless Chromium driven by selenium, with a fresh profile and these extra flags."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",  # no GPU process for drawing; WebGPU's software adapter still works
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}",
        *flags,
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@contextlib.contextmanager
def served(folder: Path, isolated: bool) -> Iterator[str]:
    """folder served on 127.0.0.1 (any free port), with its card's headers when isolated; its URL."""
    server = preview_server(folder, 0, isolated=isolated, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def wait_for(driver, script: str, timeout: float) -> object:
    """Poll script in the page until it returns something true; that value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(script))


def open_page(driver, url: str, timeout: float = 600) -> dict:
    """Load the page at url until its model is ready (or it failed); the page's state."""
    driver.get(url)
    wait_for(driver, "return window.gpt2 && (window.gpt2.ready || window.gpt2.error)", timeout)
    return driver.execute_script("return window.gpt2")


def generate(driver, tokens: int, timeout: float = 900, controls: dict | None = None) -> dict:
    """One generation of tokens new tokens with the page's Generate button (and controls, by field id); tokens/s
    and the per-token times."""
    from selenium.webdriver.common.by import By

    fields = (("prompt", PROMPT), ("temperature", TEMPERATURE), ("top_k", TOP_K), ("tokens", tokens))
    for name, value in (*fields, *(controls or {}).items()):
        field = driver.find_element(By.ID, name)
        field.clear()
        field.send_keys(str(value))
    done = driver.execute_script("return window.gpt2.done || 0")
    driver.find_element(By.ID, "generate").click()
    wait_for(driver, f"return (window.gpt2.done || 0) > {done} || window.gpt2.error", timeout)
    state = driver.execute_script("return window.gpt2")
    if state["error"]:
        raise RuntimeError(f"the page failed: {state['error']}")
    return dict(tokens_per_s=state["tokensPerSecond"], times=state.get("tokenTimes"))


def per_token_ms(times: list[float] | None, n: int, window: int = 10) -> float | None:
    """The median time between tokens over the window tokens before the n-th (None without per-token times)."""
    if not times or len(times) < n or n <= window:
        return None
    return statistics.median(b - a for a, b in zip(times[n - window - 1 : n - 1], times[n - window : n]))


def measure_page(
    driver, url: str, lengths: list[int], repeats: int, backend: str = "wasm", controls: dict | None = None
) -> dict:
    """The page at url: ready time, backend, threads; per length the median tokens/s and the ms/token near its end."""
    state = open_page(driver, url)
    row = dict(
        ready=state.get("readySeconds"),
        backend=state.get("backend") or backend,  # a page from before issue 26 runs WebAssembly and does not say
        threads=state.get("threads") or (1 if not driver.execute_script("return self.crossOriginIsolated") else None),
        isolated=driver.execute_script("return self.crossOriginIsolated"),
        gpu=state.get("gpu"),
        error=state.get("error"),
    )
    if row["error"]:
        return row
    runs = {n: [generate(driver, n, controls=controls) for _ in range(repeats)] for n in lengths}
    row["lengths"] = lengths
    longest = max(lengths)
    for n in lengths:
        row[f"tps{n}"] = statistics.median(r["tokens_per_s"] for r in runs[n])
        row[f"ms{n}"] = statistics.median(
            [ms for r in runs[longest] if (ms := per_token_ms(r["times"], n)) is not None] or [float("nan")]
        )
    return row


def page_sampling_script() -> str:
    """The page's sampling functions (index.html's sample, penalize, sampleTopP and their helpers), to run alone."""
    html = (STATIC / "index.html").read_text()
    return html[html.index("function kthLargest") : html.index("// GPT-2's byte-level BPE")]


def page_draw_ms(driver, vocab_size: int, controls: dict | None = None, repeats: int = 300) -> float:
    """Milliseconds per token of the page's sampling step alone (penalty, top-k 200, top-p, draw), in the browser,
    on random logits (normal, scale 3)."""
    script = (
        page_sampling_script()
        + """
    const [n, topK, topP, penalty, repeats] = arguments;
    const logits = new Float32Array(n), work = new Float32Array(n), heap = new Float32Array(topK), seen = [];
    const normal = () => Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
    for (let i = 0; i < n; i++) logits[i] = 3 * normal();
    for (let i = 0; i < 64; i++) seen.push(i * 13);
    const step = () => {
      work.set(logits);
      if (penalty !== 1) penalize(work, seen, penalty);
      return sample(work, 0.8, heap, topP);
    };
    for (let i = 0; i < 20; i++) step();
    const start = performance.now();
    for (let i = 0; i < repeats; i++) step();
    return (performance.now() - start) / repeats;"""
    )
    controls = controls or {}
    args = (vocab_size, TOP_K, controls.get("top_p", 1), controls.get("repetition_penalty", 1), repeats)
    return driver.execute_script(script, *args)


def pytorch_speed(model: GPT, lengths: list[int], repeats: int, controls: dict | None = None) -> dict:
    """PyTorch's generate_stream (KV cache) with the page's settings (and controls): tokens/s and ms/token near each
    length."""
    ids = torch.tensor([get_encoding().encode(PROMPT)])
    row = dict(backend="PyTorch", threads=torch.get_num_threads(), isolated=None, ready=None, error=None, gpu=None)
    row["lengths"] = lengths
    list(model.generate_stream(ids, 2, TEMPERATURE, TOP_K))  # warm up
    times = {}
    for n in lengths:
        runs = []
        for _ in range(repeats):
            start, stamps = time.perf_counter(), []
            for _ in model.generate_stream(ids, n, TEMPERATURE, TOP_K, **(controls or {})):
                stamps.append(1000 * (time.perf_counter() - start))
            runs.append(stamps)
        row[f"tps{n}"] = statistics.median(n / (r[-1] / 1000) for r in runs)
        times[n] = runs
    longest = max(lengths)
    for n in lengths:
        row[f"ms{n}"] = statistics.median(per_token_ms(r, n) or float("nan") for r in times[longest])
    return row


def random_checkpoint(model: GPT, folder: Path) -> Path:
    """model saved as a deployment checkpoint, folder/model_final.pt (what make_space reads)."""
    deploy = make_checkpoint(DEPLOYMENT, step=0, model=model, loss=0.0, config={})
    return save_checkpoint(deploy, folder / "model_final.pt")


def folder_row(dtype: str, folder: Path, seconds: float) -> str:
    """One line per built folder: each backend's file and size, the time make_space took."""
    import json

    models = json.loads((folder / "space.json").read_text())["models"]
    files = ", ".join(
        f"{backend} {m['file']} ({m['dtype']}, {m['bytes'] / 1e6:.1f} MB)" for backend, m in models.items()
    )
    return f"{dtype:<8} {files}; make_space {seconds:.0f} s"


def bench_space(
    model: GPT,
    dtypes: list[str],
    lengths: list[int],
    repeats: int,
    work_dir: Path,
    compare: list[Path] = (),
    threads: list[int] = (),
    webgpu_tokens: int = 3,
    controls: bool = False,
) -> tuple[list[str], list[dict]]:
    """Build each export's folder and measure its page per backend (and each compared folder); lines and rows.

    controls: the first export's isolated WebAssembly page and PyTorch measured again with CONTROLS on.
    """
    lines = []
    folders = {}
    checkpoint = random_checkpoint(model, work_dir)
    for dtype in dtypes:
        start = time.perf_counter()
        folders[dtype] = make_static_space(checkpoint, work_dir / dtype, dtype=dtype)
        lines.append(folder_row(dtype, folders[dtype], time.perf_counter() - start))
    rows = []
    driver = chromium(*OFFLINE, *SOFTWARE_WEBGPU)
    try:
        if controls:
            off, on = (page_draw_ms(driver, model.config.vocab_size, c) for c in (None, CONTROLS))
            lines.append(f"the page's draw alone, top-k {TOP_K}: {off:.3f} ms a token, {on:.3f} ms with {CONTROLS}")
        for dtype, folder in folders.items():
            with served(folder, isolated=True) as url:
                for n in threads or [None]:
                    query = "?backend=wasm" + (f"&threads={n}" if n else "")
                    rows.append(dict(measure_page(driver, url + query, lengths, repeats), page=dtype))
                    if controls and dtype == dtypes[0]:
                        row = measure_page(driver, url + query, lengths, repeats, controls=CONTROLS)
                        rows.append(dict(row, page=f"{dtype}, controls", controls_off=dtype))
            with served(folder, isolated=False) as url:
                rows.append(dict(measure_page(driver, url + "?backend=wasm", lengths, repeats), page=dtype))
            if webgpu_tokens:
                with served(folder, isolated=True) as url:
                    row = measure_page(driver, url + "?backend=webgpu", [webgpu_tokens], 1, "webgpu")
                    rows.append(dict(row, page=dtype))
        for folder in compare:
            with served(folder, isolated=False) as url:
                rows.append(dict(measure_page(driver, url, lengths, repeats), page=f"{folder}"))
        version = driver.capabilities.get("browserVersion", "?")
    finally:
        driver.quit()
    rows.append(dict(pytorch_speed(model, lengths, repeats), page="float32, KV cache"))
    if controls:
        row = pytorch_speed(model, lengths, repeats, CONTROLS)
        rows.append(dict(row, page="float32, controls", controls_off="float32, KV cache"))
    lines.insert(0, f"Chromium {version} headless, onnxruntime-web {PACKAGES['onnxruntime-web'][0]}")
    return lines, rows


def space_report(lines: list[str], rows: list[dict], lengths: list[int], title: str) -> str:
    """bench_space's folders and rows as text: one row per page and backend, then the speed-ups."""
    head = (
        f"{'page':<18} {'backend':<26} {'threads':>7}  {'ready':>6}  "
        + "  ".join(f"{f'tok/s {n}':>9}" for n in lengths)
        + "  "
        + "  ".join(f"{f'ms/tok @{n}':>10}" for n in lengths)
    )
    out = [title, *lines, "", head]
    for r in rows:
        backend = r["backend"] + (f" ({r['gpu']})" if r.get("gpu") else "")
        if r["backend"] == "wasm":
            backend += ", isolated" if r["isolated"] else ", not isolated"
        start = f"{r['page'][-18:]:<18} {backend:<26} {str(r.get('threads') or '-'):>7}  "
        ready = f"{r['ready']:>5.1f}s" if r.get("ready") else f"{'-':>6}"
        if r.get("error"):
            out.append(f"{start}{ready}  not run: {r['error']}")
            continue
        if r["lengths"] != lengths:  # WebGPU on the software adapter: a few tokens
            n = r["lengths"][0]
            out.append(f"{start}{ready}  {r[f'tps{n}']:>9.2f} tok/s over {n} tokens (a software GPU: not a speed)")
            continue
        speeds = "  ".join(f"{r[f'tps{n}']:>9.1f}" for n in lengths)
        ms = "  ".join(f"{r[f'ms{n}']:>10.1f}" for n in lengths)
        out.append(f"{start}{ready}  {speeds}  {ms}")
    return "\n".join(out)


def speedups(rows: list[dict], lengths: list[int], default: str, compare: list[Path]) -> list[str]:
    """The default export's fastest isolated WebAssembly page against the compared folders' and PyTorch's speed."""
    ours = [r for r in rows if r["page"] == default and r["backend"] == "wasm" and r["isolated"] and not r["error"]]
    if not ours:
        return []
    best = max(ours, key=lambda r: r[f"tps{lengths[0]}"])
    others = [r for r in rows if r["backend"] == "PyTorch" or r["page"] in {str(c) for c in compare}]
    others = [r for r in others if "controls_off" not in r]
    threads = f"{best['threads']} thread{'s' if best['threads'] != 1 else ''}"
    return [
        f"{default}, {threads}, against {o['page']} ({o['backend']}, {o['threads']} thread"
        f"{'s' if o['threads'] != 1 else ''}): "
        + ", ".join(f"{best[f'tps{n}'] / o[f'tps{n}']:.2f}x at {n} tokens" for n in lengths)
        for o in others
        if not o.get("error")
    ]


def controls_cost(rows: list[dict], lengths: list[int]) -> list[str]:
    """--controls: each page's (and PyTorch's) ms per token with CONTROLS on over its ms per token with them off."""
    lines = []
    for on in [r for r in rows if "controls_off" in r and not r.get("error")]:
        same = ("backend", "threads", "isolated")
        off = next(r for r in rows if r["page"] == on["controls_off"] and all(r[k] == on[k] for k in same))
        lines.append(
            f"{on['page']} ({on['backend']}, {on['threads']} threads), ms/token with {CONTROLS} over without: "
            + ", ".join(f"{on[f'ms{n}'] / off[f'ms{n}']:.3f}x at {n} tokens" for n in lengths)
        )
    return lines


def cpu_note() -> str:
    """This machine's CPUs and load, for the report."""
    load = os.getloadavg()[0]
    try:
        name = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        name = subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} CPUs ({name}), load average {load:.1f} at the start"
