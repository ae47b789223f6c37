"""A checkpoint as a Gradio Hugging Face Space that tries the model; the command is helpers.commands.make_space.

The static kind (the default, free for every account) is helpers.hf.static_space.

The folder holds the page (app.py, from helpers/hf/space_template/), the project's model.py and
sampling.py (byte copies of helpers/model.py and helpers/sampling.py), the deployment checkpoint (a
full one is stripped of its optimizer state first), its facts (space.json), requirements.txt, the
Space card (README.md), GPT-2's tokenizer files (so the app starts offline) and the .gitattributes
that keeps the checkpoint in Git LFS. `cd OUT_DIR && python app.py` runs it as the Space will;
nothing in it imports helpers.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from string import Template

from helpers import model as model_module
from helpers import sampling as sampling_module
from helpers.checkpoints.format import DTYPES, to_deployment
from helpers.checkpoints.storage import load_model, save_checkpoint
from helpers.fileio import atomic_write_bytes, check_out_dir, write_folder
from helpers.hf.hub import upload_to_hub
from helpers.hf.tokenizer_files import gpt2_tokenizer_files
from helpers.model import GPT

TEMPLATE = Path(__file__).resolve().parent / "space_template"
COPIED = {"app.py": "app.py", "gitattributes": ".gitattributes"}
HARDWARE = {
    "cpu-basic": "requirements.txt",
    "zero-gpu": "requirements-zero-gpu.txt",
}  # --hardware -> the Space's requirements
ZERO_GPU_PYTHON = "3.10.13"  # the Python ZeroGPU supports (requirements-zero-gpu.txt says where that is written)
FORMATS = {"pt": "model_final.pt", "safetensors": "model_final.safetensors"}
PT_SNIPPET = """import torch
from model import GPT, GPTConfig

checkpoint = torch.load("model_final.pt", map_location="cpu", weights_only=True)
model = GPT(GPTConfig(**checkpoint["model_args"]))
model.load_state_dict(checkpoint["model_state_dict"])
model.eval()"""
SAFETENSORS_SNIPPET = """import json
from safetensors import safe_open
from model import GPT, GPTConfig

with safe_open("model_final.safetensors", framework="pt") as f:  # the other keys are JSON metadata
    checkpoint = {key: json.loads(value) for key, value in f.metadata().items()}
    state = {key: f.get_tensor(key) for key in f.keys()}
for alias, source in checkpoint["tied_weights"].items():
    state[alias] = state[source]  # lm_head.weight is stored once, as the token embedding
model = GPT(GPTConfig(**checkpoint["model_args"]))
model.load_state_dict(state)
model.eval()"""


def gradio_version() -> str:
    """The gradio version the Space runs: the pin in the template's requirements.txt (one place)."""
    for line in (TEMPLATE / "requirements.txt").read_text().splitlines():
        if line.startswith("gradio=="):
            return line.split("==", 1)[1].strip()
    raise RuntimeError(f"{TEMPLATE / 'requirements.txt'} pins no gradio version")


def space_facts(model: GPT, ckpt: dict, checkpoint_name: str, dtype: str, title: str) -> dict:
    """What the page and the card say about the model (space.json); file_bytes is filled in once written."""
    val_loss, val_step = ckpt.get("val_loss"), ckpt.get("step")
    history = (ckpt.get("history") or {}).get("val") or []
    if not isinstance(val_loss, (int, float)) and history:
        val_step, val_loss = history[-1]  # the final step was not an evaluation step
    return {
        "title": title,
        "checkpoint": checkpoint_name,
        "dtype": dtype,
        "step": int(ckpt["step"]),
        "loss": float(ckpt["loss"]),
        "val_loss": float(val_loss) if isinstance(val_loss, (int, float)) else None,
        "val_step": val_step,
        "parameters": model.num_params(),
        "config": ckpt.get("config", {}),
        **model.config.to_dict(),
    }


def card_fields(facts: dict) -> dict:
    """The facts as the Space cards print them (both kinds): sizes, losses, the run's settings."""
    config = facts["config"] if isinstance(facts["config"], dict) else {}
    settings = ", ".join(
        f"{k} {config[k]}"
        for k in ("preset", "max_steps", "batch_size", "grad_accum_steps", "learning_rate", "dtype")
        if k in config
    )
    val = f"{facts['val_loss']:.4f} (at step {facts['val_step']})" if facts["val_loss"] is not None else "not measured"
    return dict(
        facts,
        parameters_m=f"{facts['parameters'] / 1e6:,.1f}",
        loss=f"{facts['loss']:.4f}",
        val_loss=val,
        settings=settings or "not recorded",
        file_mb=f"{facts['file_bytes'] / 1e6:,.1f}",
    )


def model_card(facts: dict, fmt: str) -> str:
    """README.md of the Gradio Space: the card's YAML header and the model card, from the template."""
    zero = facts.get("hardware") == "zero-gpu"
    return Template((TEMPLATE / "README.md").read_text()).substitute(
        card_fields(facts),
        gradio_version=gradio_version(),
        runs_on="on a ZeroGPU GPU" if zero else "on the CPU",
        hardware_card=f"python_version: {ZERO_GPU_PYTHON}\nsuggested_hardware: zero-a10g\n" if zero else "",
        load_snippet=SAFETENSORS_SNIPPET if fmt == "safetensors" else PT_SNIPPET,
    )


def make_space(
    checkpoint: str | Path,
    out_dir: str | Path,
    force: bool = False,
    dtype: str = "float32",
    fmt: str = "pt",
    title: str = "GPT-2 on Shakespeare",
    hardware: str = "cpu-basic",
) -> Path:
    """Write a Gradio Space for the checkpoint (full or deployment, .pt or .safetensors) into out_dir, for hardware."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if dtype not in DTYPES or fmt not in FORMATS or hardware not in HARDWARE:
        raise ValueError(
            f"dtype must be one of {', '.join(DTYPES)}; fmt one of {', '.join(FORMATS)}; "
            f"hardware one of {', '.join(HARDWARE)}"
        )
    check_out_dir(out_dir, force, source=checkpoint)  # before the slow load
    model, ckpt = load_model(checkpoint)  # every check the tools make, weights fitted to the model
    deploy = to_deployment(ckpt, dtype)  # the strip tool's own code: no optimizer or training state
    deploy["model_args"] = model.config.to_dict()  # a file with only the five original keys lacks it
    try:
        tokenizer = gpt2_tokenizer_files()
    except FileNotFoundError as e:
        tokenizer = {}
        warnings.warn(f"no tokenizer files in the Space ({e}); the app downloads them when it starts", stacklevel=2)
    name = FORMATS[fmt]
    facts = dict(space_facts(model, ckpt, name, dtype, title), hardware=hardware)

    def fill(folder: Path) -> None:
        written = save_checkpoint(deploy, folder / name)  # .pt or .safetensors, by the name
        facts["file_bytes"] = written.stat().st_size
        for source, target in {**COPIED, HARDWARE[hardware]: "requirements.txt"}.items():
            shutil.copyfile(TEMPLATE / source, folder / target)
        shutil.copyfile(model_module.__file__, folder / "model.py")  # the same code, never edited by hand
        shutil.copyfile(sampling_module.__file__, folder / "sampling.py")
        for path in tokenizer.values():  # under tiktoken's own cache names
            (folder / "tiktoken_cache").mkdir(exist_ok=True)
            shutil.copyfile(path, folder / "tiktoken_cache" / path.name)
        atomic_write_bytes(folder / "space.json", json.dumps(facts, indent=2).encode() + b"\n")
        atomic_write_bytes(folder / "README.md", model_card(facts, fmt).encode())

    return write_folder(out_dir, fill, force)


def push_space(folder: str | Path, repo_id: str, token: str | None = None) -> str | None:
    """Create the Space repo_id if need be (static or Gradio, as the folder is) and upload folder; its URL, or None."""
    return upload_to_hub(folder, repo_id, token, repo_type="space")
