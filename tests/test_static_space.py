"""helpers.make_space --kind static: the folder, the ONNX exports against PyTorch, the local preview server,
the page in a headless Chromium that can reach nothing but the folder's own HTTP server (WebAssembly with
and without threads, WebGPU on Chromium's software adapter, the fallbacks), and --push against the stand-in Hub.

The model: the ci preset's size, trained here on tiny Shakespeare for a few seconds. To refresh the
README's screenshot from a real checkpoint:
    SPACE_CHECKPOINT=checkpoints/cpu-7m/model_final.pt SPACE_SCREENSHOT=docs/space_static.png \
        bash scripts/test.sh tests/test_static_space.py -k browser
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_make_space import chrome, full_checkpoint, keep_screenshot

from conftest import TINY, FakeHfApi, full_ckpt
from helpers.checkpoints.storage import load_model, save_checkpoint
from helpers.commands.bench_space import (
    CONTROLS,
    OFFLINE,
    SOFTWARE_WEBGPU,
    measure_page,
    open_page,
    page_draw_ms,
    page_sampling_script,
    served,
    wait_for,
)
from helpers.commands.make_space import main
from helpers.data import get_batch, get_encoding, load_tokens
from helpers.errors import PathError
from helpers.hf import js_runtime
from helpers.hf.onnx_export import empty_cache, export_onnx
from helpers.hf.preview import card_headers, preview_server
from helpers.hf.space import gradio_version, make_space
from helpers.hf.static_space import STATIC, make_static_space, space_address
from helpers.model import GPT, GPTConfig, warp
from helpers.sampling import text_stream

STATIC_FILES = {
    ".gitattributes",
    "README.md",
    "index.html",
    "model.onnx",
    "model_webgpu.onnx",
    "space.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vendor",
}
WASM_FILES = {"ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"}
WEBGPU_FILES = {"ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm"}
VENDOR_FILES = {"NOTICE.txt", "tokenizers.min.mjs", *WASM_FILES, *WEBGPU_FILES}
ISOLATION = {  # the Space card's custom_headers: cross-origin isolated, so WebAssembly may use threads
    "cross-origin-embedder-policy": "require-corp",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "cross-origin",
}


# A repo name with what the Hub's subdomains change (upper case, "_", "."), and the Space's own address.
OWN = ("Me/GPT2_Shakespeare.v2", "https://me-gpt2-shakespeare-v2.static.hf.space")


def train(model: GPT, tokens: np.ndarray, steps: int, batch: int, lr: float) -> GPT:
    """model after steps of AdamW on random windows of tokens (seeded): a model that has learnt something."""
    torch.manual_seed(0)
    opt = model.configure_optimizer(0.0, lr, (0.9, 0.95), fused=False)
    block, threads = model.config.block_size, torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small: one thread is faster than two sharing two busy cores
    try:
        for _ in range(steps):
            x, y = get_batch(tokens, torch.randint(len(tokens) - block - 1, (batch,)), block)
            _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def saved(model: GPT, path: Path, step: int) -> Path:
    """model as a full checkpoint at path (training loss 6.0, validation loss 6.25 recorded)."""
    opt = model.configure_optimizer(0.0, 1e-2, (0.9, 0.95), fused=False)
    return save_checkpoint(full_ckpt(model, opt, step=step, loss=6.0, val_loss=6.25, config={"preset": "ci"}), path)


@pytest.fixture(scope="module")
def trained_ci(data_dir, tmp_path_factory) -> Path:
    """A full checkpoint of the ci-sized model after 30 steps on tiny Shakespeare (or $SPACE_CHECKPOINT)."""
    if os.environ.get("SPACE_CHECKPOINT"):
        return Path(os.environ["SPACE_CHECKPOINT"])
    torch.manual_seed(0)
    model = train(GPT(TINY), load_tokens(data_dir, "train"), steps=30, batch=8, lr=1e-2)
    return saved(model, tmp_path_factory.mktemp("trained-ci") / "model_final_full.pt", step=30)


@pytest.fixture(scope="module")
def spaces(trained_ci, tmp_path_factory) -> dict[str, Path]:
    """Static Spaces: trained_ci's by the command line's default (int8 for WebAssembly, float16 for WebGPU), and
    "varied" in float32 (its greedy text is PyTorch's, on both backends).

    A ci-sized model trained for seconds continues every prompt greedily with newlines alone, so a
    greedy comparison of it says little about positions and the cache. "varied" is a fresh ci-sized
    model with its matrices scaled by 5: its greedy text changes token by token.
    """
    root = tmp_path_factory.mktemp("static")
    assert main([str(trained_ci), str(root / "int8")]) == 0
    torch.manual_seed(0)
    varied = GPT(TINY)
    with torch.no_grad():
        for p in varied.parameters():
            p.mul_(5 if p.dim() == 2 else 1)
    return {
        "int8": root / "int8",
        "varied": make_static_space(
            saved(varied, root / "varied.pt", step=0), root / "varied", dtype="float32", repo=OWN[0]
        ),
    }


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the page's tests: offline but for 127.0.0.1, with WebGPU's software adapter."""
    driver = chrome(*OFFLINE, *SOFTWARE_WEBGPU)
    yield driver
    driver.quit()


def run_page(driver, url: str, prompt: str, tokens: int, top_k: int, timeout: float = 120, **fields: object) -> dict:
    """Open the page, wait for the model, type the prompt and settings (fields: others, by id), press Generate; the
    page's state and text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    button = driver.find_element(By.ID, "generate")
    assert not button.is_enabled() or driver.execute_script("return window.gpt2.ready")  # disabled until ready
    wait.until(lambda d: d.execute_script("return window.gpt2 && (window.gpt2.ready || window.gpt2.error)"))
    assert driver.execute_script("return window.gpt2.error") is None
    for name, value in (("prompt", prompt), ("tokens", tokens), ("top_k", top_k), *fields.items()):
        field = driver.find_element(By.ID, name)
        field.clear()
        field.send_keys(str(value))
    button.click()
    wait.until(lambda d: d.execute_script("return window.gpt2.done || window.gpt2.error"))
    state = driver.execute_script("return window.gpt2")
    assert state["error"] is None and button.is_enabled()
    state["text"] = driver.execute_script("return document.getElementById('output').textContent")
    state["status"] = driver.find_element(By.ID, "status").text
    state["loaded"] = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    state["crossOriginIsolated"] = driver.execute_script("return self.crossOriginIsolated")
    return state


def loaded_files(state: dict, url: str) -> set[str]:
    """The names of the files the page fetched, each from url's server."""
    assert state["loaded"] and all(u.startswith(url) for u in state["loaded"]), state["loaded"]
    return {u.rsplit("/", 1)[-1].split("?")[0] for u in state["loaded"]}


def onnx_session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_logits(session, model: GPT, ids: torch.Tensor, step: int) -> list[np.ndarray]:
    """The last position's logits after each piece of ids (step tokens at a time), through the ONNX cache.

    As the page does: an "append" model's new positions are appended to the cache it is fed, a "full"
    model's cache output is fed back as it is.
    """
    inputs = session.get_inputs()[1:]
    names, append = [i.name for i in inputs], inputs[0].name.startswith("past.")
    dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
    cache = empty_cache(model, ids.size(0), cache="append" if append else "full")
    feed = {n: t.numpy().astype(dtype) for n, t in zip(names, cache)}
    logits = []
    for i in range(0, ids.size(1), step):
        out = session.run(None, {"input_ids": ids[:, i : i + step].numpy(), **feed})
        if append:
            feed = {n: np.concatenate([feed[n], new], axis=1) for n, new in zip(names, out[1:])}
        else:
            feed = dict(zip(names, out[1:]))
        logits.append(out[0][:, -1])
    return logits


# ----------------------------------------------------------------------------- the folder


@pytest.mark.slow  # exports ONNX (seconds each)
def test_static_folder_is_complete(spaces, trained_ci):
    space = spaces["int8"]
    assert {p.name for p in space.iterdir()} == STATIC_FILES
    assert {p.name for p in (space / "vendor").iterdir()} == VENDOR_FILES
    card = yaml.safe_load(re.match(r"---\n(.*?)\n---\n", (space / "README.md").read_text(), re.S).group(1))
    assert {k: card[k] for k in ("sdk", "app_file", "license")} == {
        "sdk": "static",
        "app_file": "index.html",
        "license": "mit",
    }
    assert card["title"] and card["emoji"] and "sdk_version" not in card
    # Hugging Face's custom_headers, keys in lower case: the Space is cross-origin isolated
    assert card["custom_headers"] == ISOLATION and card_headers(space) == ISOLATION
    lfs = (space / ".gitattributes").read_text().splitlines()
    # the Hub refuses files over 10 MB outside LFS/Xet: each such file matches a pattern here
    big = [p for p in space.rglob("*") if p.is_file() and p.stat().st_size > 10e6]
    assert big and all(f"*{p.suffix} filter=lfs diff=lfs merge=lfs -text" in lfs for p in big)
    facts = json.loads((space / "space.json").read_text())
    model, _ = load_model(trained_ci)
    models = facts["models"]
    assert {b: (m["file"], m["dtype"], m["cache"], m["cache_dtype"]) for b, m in models.items()} == {
        "wasm": ("model.onnx", "int8", "append", "float32"),
        "webgpu": ("model_webgpu.onnx", "float16", "full", "float16"),
    }
    assert models["webgpu"]["features"] == ["shader-f16"]
    for m in models.values():
        onnx = (space / m["file"]).read_bytes()
        assert (m["bytes"], m["sha256"]) == (len(onnx), hashlib.sha256(onnx).hexdigest())
    assert facts["file_bytes"] == sum(m["bytes"] for m in models.values())
    assert facts["parameters"] == model.num_params() and facts["block_size"] == model.config.block_size
    assert facts["runtime"] == {name: spec[0] for name, spec in js_runtime.PACKAGES.items()}
    if not os.environ.get("SPACE_CHECKPOINT"):
        assert (facts["step"], facts["val_loss"]) == (30, 6.25) and "| steps | 30 |" in (
            space / "README.md"
        ).read_text()
    # int8 is about a quarter of float32's bytes, float16 half (the same shape of model in "varied")
    varied = json.loads((spaces["varied"] / "space.json").read_text())["models"]
    assert models["wasm"]["bytes"] < 0.35 * varied["wasm"]["bytes"]
    assert 0.45 < models["webgpu"]["bytes"] / varied["webgpu"]["bytes"] < 0.55
    # the page loads nothing from another host: every URL in it is relative
    page = (space / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and not re.search(r"from \"(https?:)?//", page)


@pytest.mark.slow  # exports ONNX (seconds each)
def test_vendored_runtime_is_npm_pinned_files(spaces):
    """Each vendored file is the one in the pinned tarball, whose sha512 is npm's integrity string."""
    import tarfile

    for name, (version, integrity, _, files) in js_runtime.PACKAGES.items():
        payload = js_runtime.tarball(name)  # from the cache by now
        assert js_runtime.matches(payload, integrity)
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
            for member in files:
                vendored = (spaces["int8"] / "vendor" / Path(member).name).read_bytes()
                assert vendored == tar.extractfile(f"package/{member}").read(), member


def test_tampered_download_is_refused(monkeypatch, tmp_path):
    class Response(io.BytesIO):  # what urlopen gives: a readable context manager
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setenv("GPT2_NPM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(js_runtime.urllib.request, "urlopen", lambda url, timeout: Response(b"not the package"))
    with pytest.raises(PathError, match=r"tokenizers-0\.2\.0\.tgz: is not the pinned @huggingface/tokenizers@0\.2\.0"):
        js_runtime.tarball("@huggingface/tokenizers")
    assert not (tmp_path / "cache").exists()  # nothing kept


@pytest.mark.slow  # exports ONNX (seconds each)
def test_tokenizer_json_encodes_as_tiktoken(spaces):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(spaces["int8"] / "tokenizer.json"))
    text = (
        "KING RICHARD III:\nNow is the winter of our discontent\n\n  Made glorious summer — 'tis, é 你好 <|endoftext|>x"
    )
    assert tokenizer.encode(text).ids == get_encoding().encode(text, allowed_special="all")
    assert tokenizer.decode(tokenizer.encode(text).ids, skip_special_tokens=False) == text


# ----------------------------------------------------------------------------- the ONNX model against PyTorch


@pytest.mark.slow  # exports ONNX (seconds each)
@pytest.mark.parametrize("backend", ["wasm", "webgpu"])
def test_onnx_logits_equal_pytorch_through_the_cache(spaces, backend):
    """float32, either cache layout: the prompt at once, then a token at a time through the cache, equals the
    model's full forward."""
    model, _ = load_model(spaces["varied"].parent / "varied.pt")
    session = onnx_session(
        spaces["varied"] / json.loads((spaces["varied"] / "space.json").read_text())["models"][backend]["file"]
    )
    ids = torch.randint(
        0, model.config.vocab_size, (2, model.config.block_size), generator=torch.Generator().manual_seed(1)
    )
    got = onnx_logits(session, model, ids, 1)
    with torch.no_grad():
        for t in range(ids.size(1)):
            want, _ = model(ids[:, : t + 1])
            np.testing.assert_allclose(got[t], want[:, -1].numpy(), atol=1e-4, rtol=1e-4)
    prompt = onnx_logits(session, model, ids[:, :8], 8)[0]  # eight tokens in one run, from an empty cache
    np.testing.assert_allclose(prompt, got[7], atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def small_trained(data_dir) -> tuple[GPT, torch.Tensor, torch.Tensor]:
    """A cpu-preset-shaped model trained a little, and four windows of 64 validation tokens (inputs, targets)."""
    torch.manual_seed(0)
    model = train(
        GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=128)), load_tokens(data_dir, "train"), 12, 2, 3e-3
    )
    x, y = get_batch(load_tokens(data_dir, "val"), torch.arange(4) * 1000, 64)
    return model, x, y


@pytest.mark.slow  # exports ONNX (seconds each)
@pytest.mark.parametrize("dtype, cache", [("int8", "append"), ("float16", "full")])
def test_smaller_exports_keep_validation_loss_within_one_percent(small_trained, tmp_path, dtype, cache):
    """Each backend's default export of a model that learnt something: its validation loss (onnxruntime) against
    torch's."""
    model, x, y = small_trained
    with torch.no_grad():
        _, want = model(x, y)
    assert want.item() < 9.5  # it learnt something: a fresh model's loss is ln(50257) = 10.8
    session = onnx_session(export_onnx(model, tmp_path / "model.onnx", dtype, cache))
    logits = torch.from_numpy(np.stack(onnx_logits(session, model, x, 1), axis=1)).float()
    got = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
    assert abs(got.item() - want.item()) < 0.01 * want.item(), (got.item(), want.item())


# ----------------------------------------------------------------------------- bad input


def test_missing_export_packages_is_one_line(monkeypatch, tmp_path, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    out = tmp_path / "space"
    assert main([str(full_checkpoint(tmp_path / "full.pt")), str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install onnxscript" in err[0] and str(out) in err[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "args, problem",
    [
        (["--dtype", "float16"], "--dtype float16 is not for --kind static"),
        (["--hardware", "zero-gpu"], "--hardware and --format are for --kind gradio"),
    ],
)
def test_gradio_options_on_a_static_space_are_refused(tmp_path, capsys, args, problem):
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "model_final.pt"), str(tmp_path / "space"), *args])
    assert exit_.value.code != 0 and problem in capsys.readouterr().err
    assert not (tmp_path / "space").exists()


# ----------------------------------------------------------------------------- --push, against the stand-in Hub


@pytest.mark.slow  # exports ONNX (seconds each)
def test_push_creates_a_static_space(spaces, fake_hub, monkeypatch, capsys, tmp_path):
    from helpers.commands.cli import push

    monkeypatch.setenv("HF_TOKEN", "hf_env")
    FakeHfApi.refuse = {"gradio": 402}  # a free account: Gradio refused, static allowed
    assert push(spaces["int8"], "me/gpt2-static", "space") == 0
    assert fake_hub == [
        ("init", "hf_env"),
        ("create_repo", "me/gpt2-static", True, "space", "static", None),
        ("upload_folder", "me/gpt2-static", str(spaces["int8"]), "space"),
    ]
    assert "https://huggingface.co/spaces/me/gpt2-static" in capsys.readouterr().out


@pytest.mark.parametrize(
    "hardware, status, flavour, need",
    [
        ("cpu-basic", 402, "cpu-basic", "needs a PRO account"),
        ("zero-gpu", 403, "zero-a10g", "may host two ZeroGPU Spaces"),
    ],
)
def test_gradio_space_refused_by_the_hub_is_one_line(
    fake_hub, monkeypatch, capsys, tmp_path, hardware, status, flavour, need
):
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    FakeHfApi.refuse = {"gradio": status}
    out = tmp_path / "space"
    argv = [
        str(full_checkpoint(tmp_path / "full.pt")),
        str(out),
        "--kind",
        "gradio",
        "--hardware",
        hardware,
        "--push",
        "me/gpt2-gradio",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"HTTP {status}" in err[0] and need in err[0] and "--kind static" in err[0], err
    assert "free for everyone" in err[0] and "me/gpt2-gradio" in err[0]
    assert fake_hub[1] == ("create_repo", "me/gpt2-gradio", True, "space", "gradio", flavour)
    assert len(fake_hub) == 2 and (out / "app.py").is_file()  # nothing uploaded; the folder stays


# ----------------------------------------------------------------------------- the page, in a browser


# A prompt with characters of two and three bytes that GPT-2's tokens split: the page must show them whole.
PROMPT = "JULIET:\nO Romeo, é 你好 —"
NO_ADAPTER = "navigator.gpu && (navigator.gpu.requestAdapter = async () => null);"  # a browser without a GPU


def greedy(checkpoint: Path, prompt: str, tokens: int) -> list[int]:
    """PyTorch's greedy tokens after prompt."""
    model, _ = load_model(checkpoint)
    ids = torch.tensor([get_encoding().encode(prompt)])
    return model.generate(ids, tokens, top_k=1)[0, ids.size(1) :].tolist()


def test_prompt_splits_characters_over_tokens():
    """So that the browser tests below show whole characters out of partial ones (each token's bytes alone)."""
    enc = get_encoding()
    pieces = [enc.decode_single_token_bytes(t) for t in enc.encode(PROMPT)]
    assert b"".join(pieces) == PROMPT.encode()
    split = [p for p in pieces if p.decode("utf-8", errors="replace") != p.decode("utf-8", errors="ignore")]
    assert split  # some token holds part of a character


@pytest.mark.slow
def test_browser_uses_threads_where_the_card_isolates_the_page(spaces, trained_ci, browser, tmp_path):
    """The default page on WebAssembly, served with the card's headers: cross-origin isolated, several threads, and
    the status line says so; served without them (any static server): one thread, and it says why. Each generates
    past block_size with top-k 200, loading the WebAssembly model and runtime alone, all from the folder's server."""
    model, _ = load_model(trained_ci)
    tokens = model.config.block_size + 8
    for isolated in (True, False):
        with served(spaces["int8"], isolated) as url:
            state = run_page(browser, url + "?backend=wasm", PROMPT, tokens, top_k=200)
            files = loaded_files(state, url)
        assert state["crossOriginIsolated"] is isolated and state["isolated"] is isolated
        assert state["backend"] == "wasm" and state["fallback"] is None  # asked for WebAssembly
        if isolated:
            assert (
                state["threads"] > 1
                and f"WebAssembly, {state['threads']} threads (cross-origin isolated)" in state["status"]
            )
        else:
            assert (
                state["threads"] == 1
                and "WebAssembly, 1 thread (the page is not cross-origin isolated)" in state["status"]
            )
        assert state["text"].startswith(PROMPT) and len(state["text"]) > len(PROMPT)
        assert len(state["generated"]) == tokens and len(state["tokenTimes"]) == tokens and state["tokensPerSecond"] > 0
        assert {"model.onnx", *WASM_FILES} <= files and not files & {"model_webgpu.onnx", *WEBGPU_FILES}, files
    keep_screenshot(browser, tmp_path / "space_static.png")


def test_space_address_follows_the_hubs_subdomains():
    assert space_address(OWN[0]) == OWN[1]
    assert space_address("you/gpt2-shakespeare") == "https://you-gpt2-shakespeare.static.hf.space"


@pytest.mark.slow
def test_browser_links_to_the_spaces_own_address_where_not_isolated(spaces, browser, tmp_path):
    """Not cross-origin isolated, the page says where it runs on all threads: inside another page (as inside
    huggingface.co's), the frame's own address; served without the card's headers, the Space's, from the repo name
    make_space was given. Isolated, no link."""
    from selenium.webdriver.common.by import By

    assert json.loads((spaces["varied"] / "space.json").read_text())["space_url"] == OWN[1]
    assert json.loads((spaces["int8"] / "space.json").read_text())["space_url"] is None  # made without --push
    link = "return document.getElementById('own-address')?.getAttribute('href') ?? null"
    for isolated, address in ((False, OWN[1]), (True, None)):
        with served(spaces["varied"], isolated) as url:
            state = open_page(browser, url + "?backend=wasm", timeout=120)
            assert state["error"] is None and state["isolated"] is isolated
            assert state["ownAddress"] == address and browser.execute_script(link) == address
            status = browser.find_element(By.ID, "status").text
            assert (f"all threads at the Space's own address: {OWN[1]}" in status) is not isolated, status
    parent = tmp_path / "parent"
    parent.mkdir()
    with served(spaces["varied"], isolated=True) as url:
        (parent / "index.html").write_text(f'<iframe src="{url}?backend=wasm" width="900" height="700"></iframe>')
        with served(parent, isolated=False) as outer:  # another origin (port), as huggingface.co is the Space's
            browser.get(outer)
            browser.switch_to.frame(0)
            try:
                ready = "return window.gpt2 && (window.gpt2.ready || window.gpt2.error) && window.gpt2"
                state = wait_for(browser, ready, 120)
                assert state["error"] is None and state["isolated"] is False  # the outer page is not isolated
                assert state["threads"] == 1 and state["ownAddress"] == url + "?backend=wasm"
                assert browser.execute_script(link) == url + "?backend=wasm"
                status = browser.find_element(By.ID, "status").text
                assert f"embedded in another page: all threads at the Space's own address: {url}" in status, status
            finally:
                browser.switch_to.default_content()


@pytest.mark.slow
def test_browser_greedy_text_is_pytorchs_on_webgpu_and_webassembly(spaces, browser):
    """float32 and top-k 1: by default the page runs on WebGPU (Chromium's software adapter) and its tokens and
    text are PyTorch's greedy ones past block_size (the window slides); with ?backend=wasm the same on
    WebAssembly. Each loads its own backend's model and runtime alone."""
    checkpoint = spaces["varied"].parent / "varied.pt"
    model, _ = load_model(checkpoint)
    tokens = model.config.block_size - len(get_encoding().encode(PROMPT)) + 6  # 6 past block_size
    want = greedy(checkpoint, PROMPT, tokens)
    assert len(set(want)) > 10  # so the comparison tests every step, not one repeated token
    with served(spaces["varied"], isolated=True) as url:
        for query, backend, file, runtime in (
            ("", "webgpu", "model_webgpu.onnx", WEBGPU_FILES),
            ("?backend=wasm", "wasm", "model.onnx", WASM_FILES),
        ):
            state = run_page(browser, url + query, PROMPT, tokens, top_k=1, timeout=300)
            assert (state["backend"], state["fallback"]) == (backend, None)
            assert state["generated"] == want, backend
            assert state["text"] == get_encoding().decode(get_encoding().encode(PROMPT) + want), backend
            assert ("WebGPU (" if backend == "webgpu" else "WebAssembly, ") in state["status"]
            files, others = loaded_files(state, url), {"model.onnx", "model_webgpu.onnx", *WASM_FILES, *WEBGPU_FILES}
            assert {file, *runtime} <= files and not files & (others - {file, *runtime}), files


def spanning_stop(prompt: list[int], tokens: list[int]) -> tuple[str, int]:
    """A stop string made of the end of one of tokens and the start of the next, first met there; and that next
    token's index."""
    enc = get_encoding()
    for j in range(3, len(tokens) - 1):
        a, b = enc.decode(tokens[j : j + 1]), enc.decode(tokens[j + 1 : j + 2])
        stop = a[-2:] + b[:2]
        if len(a) >= 2 and len(b) >= 2 and stop.isprintable() and "\ufffd" not in stop:
            before = enc.decode(prompt + tokens[: j + 1])[:-2]
            if "".join(text_stream(prompt, tokens, enc.decode, [stop])) == before:
                return stop, j + 1
    raise AssertionError("no stop string spans two of these tokens")


@pytest.mark.slow
def test_browser_penalty_top_p_and_stop_strings_are_pytorchs(spaces, browser):
    """WebAssembly, float32, top-k off: with a repetition penalty of 1.3 and top-p so small that one token is left,
    the page's tokens and text are PyTorch's greedy ones with the penalty, past block_size; with a stop string that
    spans two of those tokens (and one that never comes) it stops at the second and shows the text before the stop
    string, as helpers.sampling does."""
    checkpoint = spaces["varied"].parent / "varied.pt"
    model, _ = load_model(checkpoint)
    enc = get_encoding()
    prompt = enc.encode(PROMPT)
    tokens = model.config.block_size - len(prompt) + 6  # 6 past block_size
    want = model.generate(torch.tensor([prompt]), tokens, top_k=1, repetition_penalty=1.3)[0, len(prompt) :].tolist()
    assert want != greedy(checkpoint, PROMPT, tokens)  # the penalty changes the text
    stop, last = spanning_stop(prompt, want)
    controls = dict(top_p="0.000001", repetition_penalty="1.3")
    with served(spaces["varied"], isolated=True) as url:
        state = run_page(browser, url + "?backend=wasm", PROMPT, tokens, top_k=0, **controls)
        assert (state["generated"], state["text"], state["stopped"]) == (want, enc.decode(prompt + want), False)
        state = run_page(
            browser, url + "?backend=wasm", PROMPT, tokens, top_k=0, stop=f"never comes\n{stop}", **controls
        )
        assert state["generated"] == want[: last + 1] and state["stopped"]
        cut = enc.decode(prompt + want[:last])[:-2]  # the text before the stop string's first two characters
        assert state["text"] == "".join(text_stream(prompt, want, enc.decode, [stop])) == cut
        # a real draw through top-k and top-p: as many tokens as asked, none of them an error
        state = run_page(browser, url + "?backend=wasm", PROMPT, 20, top_k=200, top_p="0.9", repetition_penalty="1.3")
        assert len(state["generated"]) == 20 and not state["stopped"]


@pytest.mark.slow
@pytest.mark.parametrize("top_k, top_p, temperature", [(0, 0.9, 0.8), (50, 0.7, 1.0)])
def test_page_draws_from_the_distribution_of_pytorchs_top_k_and_top_p(browser, top_k, top_p, temperature):
    """The page's sampling functions, run in the browser 100,000 times on fixed logits: the tokens they draw are
    those PyTorch's warp keeps, as often as its probabilities say (within half a percentage point)."""
    functions = page_sampling_script()
    torch.manual_seed(0)
    logits = torch.randn(1, 300) * 2
    kept, indices = warp(logits, temperature, top_k, top_p)
    want = torch.zeros(300).index_put_((indices[0],), torch.softmax(kept, dim=-1)[0])
    counts = browser.execute_script(
        functions
        + """
        const [values, temperature, k, topP] = arguments, counts = new Array(values.length).fill(0);
        const logits = Float32Array.from(values), heap = k ? new Float32Array(k) : null;
        for (let i = 0; i < 100000; i++) counts[sample(logits, temperature, heap, topP)]++;
        return counts;""",
        logits[0].tolist(),
        temperature,
        top_k,
        top_p,
    )
    drawn = torch.tensor(counts, dtype=torch.float) / 100000
    assert not (drawn[want == 0] > 0).any() and (drawn - want).abs().max() < 0.005  # none of those left out


@pytest.mark.slow
def test_browser_falls_back_to_webassembly_by_itself(spaces, browser, tmp_path):
    """Where WebGPU cannot run the model, the page runs on WebAssembly and says why: no adapter, a GPU without the
    feature the model needs (float16's shader-f16, which Chromium's software adapter lacks), a model that fails to
    start. ?backend=webgpu there is an error, not a silent fallback."""
    checkpoint = spaces["varied"].parent / "varied.pt"
    want = greedy(checkpoint, PROMPT, 5)
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NO_ADAPTER})
    try:
        with served(spaces["varied"], isolated=True) as url:
            state = run_page(browser, url, PROMPT, 5, top_k=1)
            assert (state["backend"], state["fallback"], state["generated"]) == ("wasm", "no WebGPU adapter", want)
            assert "WebGPU not used: no WebGPU adapter" in state["status"]
            browser.get(url + "?backend=webgpu")
            error = wait_for_page(browser)["error"]
            assert error == "no WebGPU adapter"
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})
    broken = shutil.copytree(spaces["varied"], tmp_path / "broken")
    (broken / "model_webgpu.onnx").write_bytes(b"not a model")
    with served(broken, isolated=True) as url:
        state = run_page(browser, url, PROMPT, 5, top_k=1)
    assert (state["backend"], state["generated"]) == ("wasm", want) and state["fallback"]
    with served(spaces["int8"], isolated=True) as url:
        browser.get(url)
        f16 = browser.execute_async_script(
            "navigator.gpu.requestAdapter().then(a => arguments[0](a.features.has('shader-f16')))"
        )
        state = wait_for_page(browser)
    assert (state["backend"], state["fallback"]) == (("webgpu", None) if f16 else ("wasm", "the GPU lacks shader-f16"))


@pytest.mark.slow
def test_bench_reads_the_pages_numbers(spaces, browser):
    """bench space's measure_page on the default page: ready time, backend, threads, tokens/s, ms per token; and with
    the sampling controls on (--controls)."""
    with served(spaces["int8"], isolated=True) as url:
        row = measure_page(browser, url + "?backend=wasm", [4, 16], repeats=1)
        steered = measure_page(browser, url + "?backend=wasm", [16], repeats=1, controls=CONTROLS)  # --controls
        assert browser.execute_script("return [top_p.value, repetition_penalty.value]") == ["0.9", "1.3"]
    assert row["error"] is None and row["backend"] == "wasm" and row["isolated"] and row["threads"] > 1
    assert row["ready"] > 0 and row["tps4"] > 0 and row["tps16"] > 0 and row["ms16"] > 0
    assert steered["error"] is None and steered["tps16"] > 0 and steered["ms16"] > 0
    assert 0 < page_draw_ms(browser, 1000, repeats=5) and 0 < page_draw_ms(browser, 1000, CONTROLS, repeats=5)


@pytest.mark.slow
def test_browser_page_fails_without_the_network_it_does_not_need(spaces, browser):
    """The offline flags do block: a page that fetches from elsewhere fails (so the tests above prove something)."""
    with served(spaces["int8"], isolated=True) as url:
        browser.get(url + "?backend=wasm")
        assert wait_for_page(browser)["ready"]
        script = "const done = arguments[1]; fetch(arguments[0]).then(() => done('reached'), () => done('blocked'))"
        for elsewhere in ("https://cdn.jsdelivr.net/npm/onnxruntime-web", "http://93.184.215.14/"):
            assert browser.execute_async_script(script, elsewhere) == "blocked", elsewhere


def wait_for_page(driver, timeout: float = 120) -> dict:
    """The page's state once its model is ready or it failed."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return window.gpt2 && (window.gpt2.ready || window.gpt2.error)")
    )
    return driver.execute_script("return window.gpt2")


# ----------------------------------------------------------------------------- the local preview server


def test_preview_serves_the_cards_headers_and_module_types(tmp_path):
    """--serve's server: with the card's custom_headers on every file (or none, isolated=False); JavaScript modules
    and WebAssembly by their MIME types."""
    (tmp_path / "index.html").write_text("<!doctype html>")
    shutil.copyfile(STATIC / "README.md", tmp_path / "README.md")  # the card template's front matter
    (tmp_path / "a.mjs").write_text("export {}")
    (tmp_path / "a.wasm").write_bytes(b"\0asm")
    for isolated in (True, False):
        server = preview_server(tmp_path, 0, isolated=isolated, quiet=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/"
            for name, mime in (("", "text/html"), ("a.mjs", "text/javascript"), ("a.wasm", "application/wasm")):
                with urllib.request.urlopen(url + name) as response:
                    headers = {k.lower(): v for k, v in response.headers.items()}
                assert headers["content-type"].startswith(mime)
                assert {k: headers.get(k) for k in ISOLATION} == (ISOLATION if isolated else dict.fromkeys(ISOLATION))
        finally:
            server.shutdown()
            server.server_close()


def test_serve_refuses_what_is_not_a_spaces_folder_in_one_line(tmp_path, capsys):
    assert main(["--serve", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0] and "no index.html" in err[0]
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "README.md").write_text("# a README without a card\n")
    assert main(["--serve", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "README.md: has no YAML front matter" in err[0]


# ----------------------------------------------------------------------------- the Gradio kind on ZeroGPU


@pytest.mark.parametrize("with_spaces", [False, True])
def test_zero_gpu_gradio_space_runs_here(tmp_path, monkeypatch, with_spaces):
    """--hardware zero-gpu: ZeroGPU's requirements and card; generate carries @spaces.GPU where the package
    is (a stand-in records it), and the app generates here without it (the decorator is then a no-op)."""
    import sys
    import types

    folder = make_space(full_checkpoint(tmp_path / "full.pt"), tmp_path / "space", hardware="zero-gpu")
    requirements = (folder / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.8\.0$", requirements, re.M) and re.search(r"^spaces$", requirements, re.M)
    assert f"gradio=={gradio_version()}" in requirements and "download.pytorch.org/whl/cpu" not in requirements
    card = yaml.safe_load(re.match(r"---\n(.*?)\n---\n", (folder / "README.md").read_text(), re.S).group(1))
    assert (card["sdk"], str(card["python_version"]), card["suggested_hardware"]) == ("gradio", "3.10.13", "zero-a10g")
    assert json.loads((folder / "space.json").read_text())["hardware"] == "zero-gpu"
    lent = []
    if with_spaces:

        def gpu(function):
            lent.append(function.__name__)
            return function

        monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    else:
        monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces fails, as it does off ZeroGPU
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.syspath_prepend(str(folder))
    for name in ("app", "model"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import app  # builds the page, does not launch it

    try:
        assert lent == (["generate"] if with_spaces else [])
        *_, text = app.generate("ROMEO:", 5, 0.8, 200, 7)  # the text as it grows: the last is all of it
        assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")
        assert "running on the GPU (ZeroGPU)" in app.facts()
    finally:
        sys.modules.pop("app", None)
        sys.modules.pop("model", None)
