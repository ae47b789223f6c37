"""A checkpoint as a static Hugging Face Space: a web page that runs the model in the visitor's browser.

Static Spaces are free for every account (Gradio Spaces on cpu-basic need PRO since July 2026).
The folder: index.html (helpers/hf/space_template/static/), the model as ONNX with a KV cache
(helpers.hf.onnx_export; int8 by default), GPT-2's tokenizer.json, vendor/ (the pinned onnxruntime-web
and tokenizers.js, helpers.hf.js_runtime), space.json (the facts the page shows), the Space card and
the .gitattributes that keeps the large files in LFS/Xet. Any static web server serves it.
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
from helpers.hf.onnx_export import ONNX_DTYPES, export_onnx
from helpers.hf.space import card_fields, space_facts
from helpers.hf.tokenizer_files import gpt2_tokenizer_files, gpt2_tokenizer_json, tokenizer_config
from helpers.model import GPT2_VOCAB_SIZE

STATIC = Path(__file__).resolve().parent / "space_template" / "static"
ONNX_NAME = "model.onnx"
NEEDED = {"onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime", "tokenizers": "tokenizers"}


def require_packages() -> None:
    """One clear ImportError naming what to install when a package the static kind needs is missing."""
    missing = [pip for module, pip in NEEDED.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ImportError(
            f"the static Space needs {', '.join(missing)} to export the model: pip install {' '.join(missing)}"
        )


def static_card(facts: dict) -> str:
    """README.md of the static Space: the card (sdk: static) and the model card."""
    runtime = ", ".join(f"{name} {version}" for name, version in facts["runtime"].items())
    return Template((STATIC / "README.md").read_text()).substitute(card_fields(facts), runtime=runtime)


def make_static_space(
    checkpoint: str | Path,
    out_dir: str | Path,
    force: bool = False,
    dtype: str = "int8",
    title: str = "GPT-2 on Shakespeare",
) -> Path:
    """Write a static Space for the checkpoint (any kind, .pt or .safetensors) into out_dir: ONNX int8 or float32."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if dtype not in ONNX_DTYPES:
        raise ValueError(f"the static Space's dtype must be one of {', '.join(ONNX_DTYPES)}")
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

    def fill(folder: Path) -> None:
        onnx = export_onnx(model, folder / ONNX_NAME, dtype)
        payload = onnx.read_bytes()
        facts.update(
            onnx=ONNX_NAME,
            onnx_dtype=dtype,
            file_bytes=len(payload),
            onnx_sha256=hashlib.sha256(payload).hexdigest(),
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
