"""Which ONNX export WebAssembly runs best: the measurements behind the static Space's int8 default.

    bash -c 'source scripts/env.sh requirements-dev.txt && python scripts/measure_static_space.py'

A randomly initialised GPT-2 124M (seed 0) is exported in each variant below and run by
onnxruntime-web's WebAssembly build in a headless Chromium (cross-origin isolated, so with
threads; it reaches nothing but 127.0.0.1), one token at a time from an empty cache to 400
positions, as the page does: the median time of a run near 100 and near 400 positions, with one
thread and with two. Only the session's runs are timed (no sampling, no text): the difference
between exports. `python -m helpers.bench space` measures the pages as visitors get them.
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.commands.bench_space import OFFLINE, chromium, served, wait_for  # noqa: E402
from helpers.hf.js_runtime import vendor_runtime  # noqa: E402
from helpers.hf.onnx_export import export_float32, quiet  # noqa: E402
from helpers.hf.preview import card_headers  # noqa: E402
from helpers.hf.static_space import STATIC  # noqa: E402
from helpers.model import GPT, GPTConfig  # noqa: E402

# name -> (ONNX dtype, head untied, cache layout, fold DequantizeLinear at load)
VARIANTS = {
    "int8, tied head, full cache (before issue 26)": ("int8", False, "full", False),
    "int8, tied head, append cache": ("int8", False, "append", False),
    "int8, tied head folded at load, append cache (default)": ("int8", False, "append", True),
    "int8, head quantized on its own, append cache": ("int8", True, "append", False),
    "float32, append cache": ("float32", False, "append", False),
}
POSITIONS = 400

# The page's loop, reduced to the session: feed the cache, run one token, keep the cache; time each run.
HARNESS = """<!doctype html><meta charset="utf-8"><script type="module">
const q = new URLSearchParams(location.search);
const ort = await import("./vendor/ort.wasm.min.mjs");
try {
  ort.env.wasm.wasmPaths = new URL("./vendor/", location.href).href;
  ort.env.wasm.numThreads = +q.get("threads");
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  if (q.get("fold") === "1") options.extra = { session: { disable_quant_qdq: "1" } };
  const bytes = new Uint8Array(await (await fetch(q.get("model"))).arrayBuffer());
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(bytes, options);
  const create = (performance.now() - t0) / 1000;
  const [L, H, C, n] = [12, 12, 768, +q.get("positions")], append = q.get("cache") === "append";
  const names = (p) => Array.from({ length: L }, (_, i) => [`${p}.${i}.key`, `${p}.${i}.value`]).flat();
  const [inputs, outputs] = (append ? ["past", "new"] : ["past_key_values", "present"]).map(names);
  const buffers = inputs.map(() => new Float32Array(1024 * C));
  let cache = inputs.map(() => new ort.Tensor("float32", new Float32Array(0), [1, H, 0, C / H]));
  const times = [];
  for (let t = 0; t < n; t++) {
    const feeds = { input_ids: new ort.Tensor("int64", BigInt64Array.from([BigInt(t % 50000)]), [1, 1]) };
    inputs.forEach((name, i) => {
      feeds[name] = append ? new ort.Tensor("float32", buffers[i].subarray(0, t * C), [1, t, C]) : cache[i];
    });
    const start = performance.now();
    const out = await session.run(feeds);
    times.push(performance.now() - start);
    if (append) outputs.forEach((name, i) => buffers[i].set(out[name].data, t * C));
    else cache = outputs.map((name) => out[name]);
  }
  window.result = { create, times };
} catch (error) {
  window.result = { error: String(error) };
}
</script>"""


def export(model: GPT, folder: Path, name: str, dtype: str, untie: bool, cache: str) -> Path:
    """One variant's ONNX file in folder."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = folder / f"{name}.onnx"
    with quiet():
        raw = export_float32(model, folder / f"{name}.float32.onnx", untie=untie, cache=cache)
        if dtype == "int8":
            quantize_dynamic(raw, path, weight_type=QuantType.QInt8, per_channel=True)
            raw.unlink()
        else:
            raw.replace(path)
    return path


def near(times: list[float], n: int, window: int = 20) -> float:
    """The median run time of the window runs around position n."""
    return statistics.median(times[n - window // 2 : n + window // 2])


def main() -> None:
    """Export every variant, run each with one and two threads, print the table."""
    root = Path(tempfile.mkdtemp(prefix="static-variants-"))
    torch.manual_seed(0)
    model = GPT(GPTConfig()).eval()
    files = {}
    for i, (label, (dtype, untie, cache, _)) in enumerate(VARIANTS.items()):
        files[label] = export(model, root, f"variant{i}", dtype, untie, cache)
    vendor_runtime(root / "vendor")
    (root / "index.html").write_text(HARNESS)
    headers = "".join(f"  {k}: {v}\n" for k, v in card_headers(STATIC).items())  # the Space card's own
    (root / "README.md").write_text(f"---\ncustom_headers:\n{headers}---\n")
    driver = chromium(*OFFLINE)
    rows = []
    try:
        with served(root, isolated=True) as url:
            for threads in (1, 2):
                for label, (dtype, untie, cache, fold) in VARIANTS.items():
                    query = f"?model={files[label].name}&threads={threads}&cache={cache}&fold={int(fold)}"
                    driver.get(url + query + f"&positions={POSITIONS}")
                    result = wait_for(driver, "return window.result", 900)
                    if "error" in result:
                        raise RuntimeError(f"{label}: {result['error']}")
                    rows.append((label, threads, result))
    finally:
        driver.quit()
    print(
        f"GPT-2 124M, random weights; onnxruntime-web's WebAssembly in Chromium, cross-origin isolated; "
        f"one token a run from an empty cache to {POSITIONS} positions; median ms of the 20 runs around each position"
    )
    print(f"{'export':<56} {'MB':>6}  {'threads':>7}  {'start':>6}  {'ms @100':>8}  {'ms @400':>8}")
    for label, threads, r in rows:
        mb = files[label].stat().st_size / 1e6
        times = r["times"]
        print(
            f"{label:<56} {mb:>6.1f}  {threads:>7}  {r['create']:>5.1f}s  {near(times, 100):>8.1f}  "
            f"{near(times, POSITIONS - 10):>8.1f}"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end, {time.strftime('%H:%M')}")


if __name__ == "__main__":
    main()
