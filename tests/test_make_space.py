"""helpers.make_space: the Space folder, its app started on its own (gradio_client and a headless
Chromium drive it), and --push against the stand-in Hub.

The app's tests share one started app (module scope). To refresh the README's screenshot:
    SPACE_CHECKPOINT=checkpoints/model_final.pt SPACE_SCREENSHOT=docs/space_app.png \
        bash scripts/test.sh tests/test_make_space.py -k browser
"""

import ast
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
import yaml

from conftest import save_full
from helpers import model as model_module
from helpers import sampling as sampling_module
from helpers.checkpoints.storage import load_model
from helpers.commands.make_space import main
from helpers.data import get_encoding
from helpers.hf.space import gradio_version, make_space
from helpers.model import GPT, GPTConfig

SPACE_FILES = {
    ".gitattributes",
    "README.md",
    "app.py",
    "model.py",
    "model_final.pt",
    "sampling.py",
    "requirements.txt",
    "space.json",
    "tiktoken_cache",
}
# Run inside the app's process: note every connection, and every name looked up, that is not this machine.
AUDIT = """
import os, sys
LOCAL = {None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}
def _hook(event, args):
    host = None
    if event == "socket.connect" and isinstance(args[1], tuple):
        host = args[1][0]
    elif event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
    else:
        return
    if host not in LOCAL:
        with open(os.environ["SPACE_NETWORK_LOG"], "a") as f:
            f.write(f"{event} {host}\\n")
sys.addaudithook(_hook)
"""


def full_checkpoint(path: Path) -> Path:
    """A full checkpoint of the ci-sized model, as if at the end of a 20-step ci run."""
    return save_full(path, step=20, loss=6.5, val_loss=6.75, config={"preset": "ci", "max_steps": 20})


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    """The Space of a full ci-sized checkpoint (or of $SPACE_CHECKPOINT, for the README's screenshot)."""
    root = tmp_path_factory.mktemp("space")
    checkpoint = os.environ.get("SPACE_CHECKPOINT") or full_checkpoint(root / "model_final_full.pt")
    return make_space(checkpoint, root / "space")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(space, tmp_path_factory):
    """`python app.py` started in the Space folder alone (the project is not on its path); its URL and network log."""
    audit = tmp_path_factory.mktemp("audit")
    (audit / "sitecustomize.py").write_text(AUDIT)
    port, log = free_port(), audit / "network.log"
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TIKTOKEN_CACHE_DIR", "GRADIO_ANALYTICS_ENABLED")
    }
    env.update(
        PYTHONPATH=str(audit),
        SPACE_NETWORK_LOG=str(log),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    out = audit / "app.out"
    with open(out, "w") as stdout:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=stdout, stderr=subprocess.STDOUT)
    url, start = f"http://127.0.0.1:{port}/", time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited {proc.returncode}:\n{out.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - start > 120:
                pytest.fail(f"app.py did not serve {url} within 120 s:\n{out.read_text()[-3000:]}")
            time.sleep(0.25)
        yield {"url": url, "network_log": log, "output": out}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def expected_text(space: Path, prompt: str, tokens: int, seed: int, **controls: float) -> str:
    """What the app should answer: the Space's checkpoint, generated here with the same settings."""
    model, _ = load_model(next(space.glob("model_final.*")))
    enc = get_encoding()
    out = model.generate(torch.tensor([enc.encode(prompt)]), tokens, temperature=0.8, top_k=200, seed=seed, **controls)
    return enc.decode(out[0].tolist())


# ----------------------------------------------------------------------------- the folder


def test_space_folder_is_complete(space):
    assert {p.name for p in space.iterdir()} == SPACE_FILES
    assert (space / "model.py").read_bytes() == Path(model_module.__file__).read_bytes()
    assert (space / "sampling.py").read_bytes() == Path(sampling_module.__file__).read_bytes()
    header = re.match(r"---\n(.*?)\n---\n", (space / "README.md").read_text(), re.S)
    card = yaml.safe_load(header.group(1))
    assert {k: card[k] for k in ("sdk", "app_file", "license")} == {
        "sdk": "gradio",
        "app_file": "app.py",
        "license": "mit",
    }
    assert card["title"] and card["emoji"] and str(card["sdk_version"]) == gradio_version()
    import gradio

    assert gradio.__version__ == gradio_version()  # the tests run the gradio the Space will
    requirements = (space / "requirements.txt").read_text()
    for package in ("torch", "tiktoken", "safetensors", "gradio"):
        assert re.search(rf"^{package}==\d", requirements, re.M), package
    assert "*.pt filter=lfs diff=lfs merge=lfs -text" in (space / ".gitattributes").read_text().splitlines()
    # the deployment checkpoint: the user's snippet loads it; the optimizer state was stripped
    ckpt = torch.load(space / "model_final.pt", map_location="cpu", weights_only=True)
    assert "optimizer_state_dict" not in ckpt and ckpt["kind"] == "deployment"
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model_state_dict"])
    facts = json.loads((space / "space.json").read_text())
    assert (
        facts["parameters"] == model.num_params() and facts["file_bytes"] == (space / "model_final.pt").stat().st_size
    )
    if not os.environ.get("SPACE_CHECKPOINT"):
        assert (facts["step"], facts["val_loss"]) == (20, 6.75)
        assert "| steps | 20 |" in (space / "README.md").read_text()


def test_space_code_imports_nothing_from_the_project(space):
    for name in ("app.py", "model.py", "sampling.py"):
        tree = ast.parse((space / name).read_text())
        modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not [m for m in modules if m.split(".")[0] == "helpers"], name


@pytest.mark.slow
def test_model_card_snippet_loads_the_checkpoint(space):
    snippet = re.search(r"```python\n(.*?)```", (space / "README.md").read_text(), re.S).group(1)
    check = snippet + "\nprint(sum(p.numel() for p in model.parameters()))\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", check], cwd=space, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) == json.loads((space / "space.json").read_text())["parameters"]


def test_safetensors_half_precision_space_loads_in_the_app(tmp_path, monkeypatch):
    folder = make_space(full_checkpoint(tmp_path / "full.pt"), tmp_path / "space", dtype="float16", fmt="safetensors")
    assert "model_final.safetensors" in {p.name for p in folder.iterdir()} and not (folder / "model_final.pt").exists()
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.syspath_prepend(str(folder))
    for name in ("app", "model"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import app  # builds the page, does not launch it

    try:
        assert app.FACTS["dtype"] == "float16" and app.model.transformer.wte.weight.dtype == torch.float32
        texts = list(app.generate("ROMEO:", 10, 0.8, 200, 7))  # the text as it grows, from the prompt
        assert texts[0] == "ROMEO:" and len(texts) > 3 and all(b.startswith(a) for a, b in zip(texts, texts[1:]))
        assert texts[-1] == list(app.generate("ROMEO:", 10, 0.8, 200, 7))[-1] == expected_text(folder, "ROMEO:", 10, 7)
        # the other controls, as the notebook's sample: the text ends before the stop string (\n: a newline)
        whole = expected_text(folder, "ROMEO:", 30, 7, top_p=0.9, repetition_penalty=1.3)
        stop = whole[len("ROMEO:") :][5:8]
        assert "\n" not in stop
        texts = list(app.generate("ROMEO:", 30, 0.8, 200, 7, 0.9, 1.3, f"\\n\\nnever\n{stop}"))
        assert "\n\nnever" not in whole and texts[-1] == whole[: whole.index(stop, len("ROMEO:"))]
    finally:
        sys.modules.pop("app", None)
        sys.modules.pop("model", None)


# ----------------------------------------------------------------------------- bad input


def test_non_empty_out_dir_is_refused_unless_forced(space, tmp_path, capsys):
    out = tmp_path / "space"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    checkpoint = full_checkpoint(tmp_path / "full.pt")
    assert main([str(checkpoint), str(out), "--kind", "gradio"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "--force" in err[0]
    assert (out / "mine.txt").read_text() == "keep"
    assert main([str(checkpoint), str(out), "--force", "--kind", "gradio"]) == 0
    assert {p.name for p in out.iterdir()} == SPACE_FILES


@pytest.mark.parametrize("payload, problem", [(None, "no such file"), (b"garbage", "not a torch checkpoint")])
def test_bad_checkpoint_is_one_line(tmp_path, capsys, payload, problem):
    path = tmp_path / "model_final.pt"
    if payload is not None:
        path.write_bytes(payload)
    assert main([str(path), str(tmp_path / "space"), "--kind", "gradio"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and problem in err[0]
    assert not (tmp_path / "space").exists()


# ----------------------------------------------------------------------------- --push, against the stand-in Hub


def test_push_without_token_says_what_is_missing(fake_hub, tmp_path, capsys):
    out = tmp_path / "space"
    assert (
        main([str(full_checkpoint(tmp_path / "full.pt")), str(out), "--kind", "gradio", "--push", "me/gpt2-space"]) == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "me/gpt2-space" in err[0] and "HF_TOKEN" in err[0]
    assert fake_hub == [] and (out / "app.py").is_file()  # nothing uploaded; the folder is there to push later


def test_push_with_token_creates_a_gradio_space_and_uploads(fake_hub, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    out = tmp_path / "space"
    assert (
        main([str(full_checkpoint(tmp_path / "full.pt")), str(out), "--kind", "gradio", "--push", "me/gpt2-space"]) == 0
    )
    assert fake_hub == [
        ("init", "hf_env"),
        ("create_repo", "me/gpt2-space", True, "space", "gradio", "cpu-basic"),
        ("upload_folder", "me/gpt2-space", str(out), "space"),
    ]
    assert "https://huggingface.co/spaces/me/gpt2-space" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the app, started on its own


@pytest.mark.slow
def test_app_serves_generated_text_to_gradio_client(app, space):
    from gradio_client import Client

    client = Client(app["url"], verbose=False)
    text = client.predict("ROMEO:", 20, 0.8, 200, 1337, api_name="/generate")
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")
    assert client.predict("ROMEO:", 20, 0.8, 200, 1337, api_name="/generate") == text  # same seed, same text
    assert client.predict("ROMEO:", 20, 0.8, 200, 1338, api_name="/generate") != text
    assert text == expected_text(space, "ROMEO:", 20, 1337)  # the checkpoint's own model, not something else
    steered = client.predict("ROMEO:", 20, 0.8, 200, 1337, 0.9, 1.3, "", api_name="/generate")  # top-p, penalty
    assert steered == expected_text(space, "ROMEO:", 20, 1337, top_p=0.9, repetition_penalty=1.3) != text


def chrome(*flags: str):
    """A headless Chromium through selenium (with these extra flags); fails in CI (CI set), else skips when missing."""
    from helpers.commands.bench_space import chromium

    try:
        return chromium(*flags)
    except FileNotFoundError as e:  # chromium or chromedriver not installed
        message = f"{e} (.ci/run installs them)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


# Run in the page: note each new length of the output box's text, every few milliseconds.
WATCH_OUTPUT = """
window.outputLengths = [];
setInterval(() => {
    const box = document.querySelector('#output textarea');
    const n = box ? box.value.length : -1;
    if (window.outputLengths.at(-1) !== n) window.outputLengths.push(n);
}, 2);
"""


def keep_screenshot(driver, shot: Path) -> None:
    """The page as a PNG at shot, copied to $SPACE_SCREENSHOT when that is set (the README's picture)."""
    assert driver.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("SPACE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["SPACE_SCREENSHOT"])


@pytest.mark.slow
def test_browser_types_a_prompt_and_watches_the_text_grow(app, space, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    expected = expected_text(space, "JULIET:\nO Romeo", 100, 1337)  # the page's defaults: 100 tokens, seed 1337
    driver = chrome()
    try:
        driver.get(app["url"])
        wait = WebDriverWait(driver, 60)
        prompt = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#prompt textarea"))
        prompt.clear()
        prompt.send_keys("JULIET:\nO Romeo")
        driver.execute_script(WATCH_OUTPUT)
        driver.find_element(By.CSS_SELECTOR, "#generate").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#output textarea").get_attribute("value") == expected)
        lengths = driver.execute_script("return window.outputLengths")
        # streamed: the box showed the text at several lengths between the prompt and the whole
        between = [n for n in lengths if len("JULIET:\nO Romeo") < n < len(expected)]
        assert lengths == sorted(lengths) and len(between) >= 3, lengths
        # everything the page loaded came from the app: no web fonts or scripts from elsewhere
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(app["url"]) for url in loaded), [
            u for u in loaded if not u.startswith(app["url"])
        ]
        keep_screenshot(driver, tmp_path / "space_app.png")
    finally:
        driver.quit()


@pytest.mark.slow
def test_app_reaches_no_network(app):
    """Run last of the app's tests: after start-up, a client and a browser, nothing left this machine."""
    log = app["network_log"]
    assert not log.exists(), log.read_text()
