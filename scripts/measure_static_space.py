"""What the static Space of GPT-2 124M weighs and how fast its page is, in a headless Chromium on this machine.

    bash -c 'source scripts/env.sh requirements-dev.txt && python scripts/measure_static_space.py'

A randomly initialised GPT-2 124M, saved by the project's own code as a deployment checkpoint,
becomes a static Space (helpers.make_space) in int8 and in float32. The int8 page is served by
Python's HTTP server on 127.0.0.1 and opened in a headless Chromium that can reach nothing else
(as tests/test_static_space.py does): the time until the model is ready, on the first visit
(download from localhost, so no network time) and again from the browser's cache, then the
tokens/s of three 100-token generations (temperature 0.8, top-k 200), as the page reports them.
"""

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]  # tests/ first: its conftest, not the root one

from measure_space import random_124m_checkpoint  # noqa: E402  (scripts/, this file's folder)
from test_static_space import OFFLINE, chrome, served  # noqa: E402  (before measure_space, which puts the root first)

from helpers.hf.static_space import make_static_space  # noqa: E402


def main() -> None:
    """Build both Spaces, time the int8 page, print the numbers."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root = Path(tempfile.mkdtemp(prefix="static-measure-"))
    ckpt = random_124m_checkpoint(root)
    for dtype in ("float32", "int8"):
        start = time.perf_counter()
        folder = make_static_space(ckpt, root / dtype, dtype=dtype)
        total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(
            f"{dtype:8} model.onnx {(folder / 'model.onnx').stat().st_size / 1e6:6.1f} MB, "
            f"folder {total / 1e6:6.1f} MB "
            f"(make_space {time.perf_counter() - start:.0f} s)"
        )
    driver = chrome(*OFFLINE)
    try:
        with served(root / "int8") as url:
            for visit in ("first visit", "from cache"):
                driver.get(url)
                WebDriverWait(driver, 600).until(
                    lambda d: d.execute_script("return window.gpt2 && (window.gpt2.ready || window.gpt2.error)")
                )
                state = driver.execute_script("return window.gpt2")
                assert state["error"] is None, state["error"]
                print(f"ready    {state['readySeconds']:.1f} s ({visit})")
            driver.find_element(By.ID, "tokens").clear()
            driver.find_element(By.ID, "tokens").send_keys("100")
            speeds = []
            for run in range(3):
                driver.find_element(By.ID, "generate").click()
                WebDriverWait(driver, 600).until(lambda d, n=run + 1: d.execute_script("return window.gpt2.done") == n)
                speeds.append(driver.execute_script("return window.gpt2.tokensPerSecond"))
            print(f"100 tokens {', '.join(f'{s:.1f}' for s in speeds)} tokens/s (int8, WebAssembly, one thread)")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
