"""A checkpoint as a static Hugging Face Space: a web page that runs the model in the visitor's browser.

Static Spaces are free for every account (Gradio Spaces on cpu-basic need PRO since July 2026).
The folder: index.html (helpers/hf/space_template/static/), the model as ONNX with a KV cache
(helpers.hf.onnx_export) once per backend as it runs best there (EXPORTS), GPT-2's tokenizer.json,
vendor/ (the pinned onnxruntime-web and tokenizers.js, helpers.hf.js_runtime), space.json (the facts
the page shows, and which file each backend loads), the Space card (whose custom_headers make the
page cross-origin isolated, so that WebAssembly gets threads) and the .gitattributes that keeps the
large files in LFS/Xet. Any static web server serves it; helpers.hf.preview as the Space does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path
from string import Template

from helpers.checkpoints.storage import load_model
from helpers.errors import CheckpointError
from helpers.fileio import atomic_write_bytes, check_out_dir, write_folder
from helpers.hf.js_runtime import vendor_runtime
from helpers.hf.onnx_export import export_onnx
from helpers.hf.space import card_fields, space_facts
from helpers.hf.tokenizer_files import gpt2_tokenizer_files, gpt2_tokenizer_json, tokenizer_config
from helpers.model import GPT, GPT2_VOCAB_SIZE
from helpers.report_card import FIGURES, figures_beside, figures_table

STATIC = Path(__file__).resolve().parent / "space_template" / "static"
# Each backend's file: the cache handed over as it suits the backend (helpers.hf.onnx_export.CACHES).
FILES = {"wasm": ("model.onnx", "append"), "webgpu": ("model_webgpu.onnx", "full")}
# --dtype -> the ONNX dtype each backend loads. int8 (the default): WebAssembly's fastest per byte
# downloaded (docs/benchmarks.md, "The static Space"), float16 on the GPU; float32: the exact model on both.
EXPORTS = {"int8": {"wasm": "int8", "webgpu": "float16"}, "float32": {"wasm": "float32", "webgpu": "float32"}}
# What a GPU needs for each dtype (WebGPU feature names): the page falls back to WebAssembly without it.
GPU_FEATURES = {"float16": ["shader-f16"], "float32": []}
NEEDED = {"onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime", "tokenizers": "tokenizers"}


def require_packages() -> None:
    """One clear ImportError naming what to install when a package the static kind needs is missing."""
    missing = [pip for module, pip in NEEDED.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ImportError(
            f"the static Space needs {', '.join(missing)} to export the model: pip install {' '.join(missing)}"
        )


def space_address(repo: str) -> str:
    """The static Space's own address (https://OWNER-NAME.static.hf.space) for repo "owner/name", as the Hub names it.

    The Hub's subdomain: owner and name joined by "-", lower case, "_" and "." as "-". There the page
    is cross-origin isolated (inside huggingface.co's page it depends on the iframe).
    """
    return "https://" + repo.strip().replace("/", "-").replace("_", "-").replace(".", "-").lower() + ".static.hf.space"


def static_card(facts: dict) -> str:
    """README.md of the static Space: the card (sdk: static, the isolation headers) and the model card."""
    runtime = ", ".join(f"{name} {version}" for name, version in facts["runtime"].items())
    wasm, webgpu = facts["models"]["wasm"], facts["models"]["webgpu"]
    return Template((STATIC / "README.md").read_text()).substitute(
        card_fields(facts),
        runtime=runtime,
        wasm_file=wasm["file"],
        wasm_dtype=wasm["dtype"],
        wasm_mb=f"{wasm['bytes'] / 1e6:,.1f}",
        webgpu_file=webgpu["file"],
        webgpu_dtype=webgpu["dtype"],
        webgpu_mb=f"{webgpu['bytes'] / 1e6:,.1f}",
        report=f"## Report card\n\n{figures_table(facts['report'])}\n" if facts.get("report") else "",
    )


def export_models(model: GPT, folder: Path, dtype: str) -> dict[str, dict]:
    """Export the model for each backend into folder as EXPORTS[dtype] says; {backend: what the page loads}."""
    models = {}
    for backend, onnx_dtype in EXPORTS[dtype].items():
        name, cache = FILES[backend]
        payload = export_onnx(model, folder / name, onnx_dtype, cache).read_bytes()
        models[backend] = dict(
            file=name,
            dtype=onnx_dtype,
            bytes=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            cache=cache,
            cache_dtype="float16" if onnx_dtype == "float16" else "float32",
        )
    models["webgpu"]["features"] = GPU_FEATURES[models["webgpu"]["dtype"]]
    return models


def make_static_space(
    checkpoint: str | Path,
    out_dir: str | Path,
    force: bool = False,
    dtype: str = "int8",
    title: str = "GPT-2 on Shakespeare",
    repo: str = "",
) -> Path:
    """Write a static Space for the checkpoint (any kind, .pt or .safetensors) into out_dir.

    dtype int8: int8 ONNX for WebAssembly, float16 for WebGPU; float32: one float32 ONNX for both.
    repo ("owner/name", when known) gives the page its Space's own address, to link to where it runs on all threads.
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if dtype not in EXPORTS:
        raise ValueError(f"the static Space's dtype must be one of {', '.join(EXPORTS)}")
    require_packages()
    check_out_dir(out_dir, force, source=checkpoint)  # before the slow load
    model, ckpt = load_model(checkpoint)
    if model.config.vocab_size != GPT2_VOCAB_SIZE:
        raise CheckpointError(
            checkpoint,
            f"has a vocabulary of {model.config.vocab_size} tokens; the page's "
            f"tokenizer is GPT-2's ({GPT2_VOCAB_SIZE})",
        )
    tokenizer = gpt2_tokenizer_files()  # FileNotFoundError says why not: the page cannot work without it
    facts = space_facts(model, ckpt, checkpoint.name, dtype, title)
    facts["space_url"] = space_address(repo) if repo.strip() else None
    figures = figures_beside(checkpoint, ckpt["step"])  # the run's report card, shown on the card and the page
    if figures:
        facts["report"] = {k: figures[k] for k in FIGURES if k in figures}

    def fill(folder: Path) -> None:
        models = export_models(model, folder, dtype)
        facts.update(
            models=models,
            file_bytes=sum(m["bytes"] for m in models.values()),  # what the Space stores
            runtime=vendor_runtime(folder / "vendor"),
        )
        atomic_write_bytes(folder / "tokenizer.json", gpt2_tokenizer_json(tokenizer).encode())
        tok = dict(tokenizer_config(model.config.block_size), clean_up_tokenization_spaces=False)
        atomic_write_bytes(folder / "tokenizer_config.json", json.dumps(tok, indent=2).encode() + b"\n")
        shutil.copyfile(STATIC / "index.html", folder / "index.html")
        shutil.copyfile(STATIC / "gitattributes", folder / ".gitattributes")
        atomic_write_bytes(folder / "space.json", json.dumps(facts, indent=2).encode() + b"\n")
        atomic_write_bytes(folder / "README.md", static_card(facts).encode())

    return write_folder(out_dir, fill, force)
