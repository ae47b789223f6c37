"""Transformers GPT-2 folders: our model exported as one, and one (local, or from the Hub) loaded as our model.

The folder written here loads with `GPT2LMHeadModel.from_pretrained(folder)` and
`pipeline("text-generation", model=folder)` with no code of ours. Nothing here needs
transformers itself; safetensors and huggingface_hub are imported only where they are used.
The weight and config mapping is helpers.hf.convert; the Hub, helpers.hf.hub.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from helpers.checkpoints.format import DTYPES, unwrap_model
from helpers.checkpoints.storage import load_model, model_with_weights
from helpers.errors import CheckpointError, describe
from helpers.fileio import atomic_write_bytes, check_out_dir, write_folder
from helpers.hf.convert import from_hf_state_dict, gpt_config_from_hf, hf_config, to_hf_state_dict
from helpers.hf.hub import download_model
from helpers.hf.tokenizer_files import EOT_ID, gpt2_tokenizer_files, tokenizer_config
from helpers.model import GPT, GPT2_VOCAB_SIZE, GPTConfig
from helpers.report_card import figures_beside, figures_table

# ----------------------------------------------------------------------------- export


def model_card(config: GPTConfig, info: dict, report: str = "") -> str:
    """A short README.md for the Hub page; report: the run's report table (helpers.report_card), if there is one."""
    trained = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
    return "\n".join(
        [
            "---",
            "library_name: transformers",
            "pipeline_tag: text-generation",
            "tags: [gpt2]",
            "---",
            "",
            f"# GPT-2 ({config.n_layer} layers, width {config.n_embd}, context {config.block_size})"
            " trained on tiny Shakespeare",
            "",
            f"Exported from a checkpoint at {trained}." if trained else "",
            "",
            "```python",
            "from transformers import pipeline",
            "",
            'generate = pipeline("text-generation", model="path/to/this/folder/or/user/repo")',
            'print(generate("ROMEO:", max_new_tokens=50)[0]["generated_text"])',
            "```",
            "",
            *(["## Report card", "", report, ""] if report else []),
        ]
    )


def export_hf_folder(
    model: GPT,
    out_dir: str | Path,
    force: bool = False,
    dtype: str = "float32",
    info: dict | None = None,
    report: str = "",
) -> Path:
    """Write model as a transformers GPT-2 folder: config, weights, tokenizer files when they can be had (else warn)."""
    from safetensors.torch import save

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    model = unwrap_model(model)  # the notebook's model may be compiled or DDP-wrapped
    config = model.config
    hf = hf_config(config, dtype)
    tensors = {k: v.to(DTYPES[dtype]) for k, v in to_hf_state_dict(model).items()}
    tokenizer = None
    if config.vocab_size == GPT2_VOCAB_SIZE:
        try:
            tokenizer = gpt2_tokenizer_files()
        except FileNotFoundError as e:
            warnings.warn(
                f"no tokenizer files written ({e}); load the tokenizer from the Hub's 'gpt2' instead", stacklevel=2
            )

    def fill(folder: Path) -> None:
        atomic_write_bytes(folder / "config.json", json.dumps(hf, indent=2).encode() + b"\n")
        # max_length: transformers' default generation length can run past a short context and
        # crash on the position embedding; pipelines then warn when max_new_tokens is also given.
        generation = {"bos_token_id": EOT_ID, "eos_token_id": EOT_ID, "max_length": config.block_size}
        atomic_write_bytes(folder / "generation_config.json", json.dumps(generation, indent=2).encode() + b"\n")
        # {"format": "pt"} is what transformers expects in a model.safetensors header.
        atomic_write_bytes(folder / "model.safetensors", save(tensors, metadata={"format": "pt"}))
        if tokenizer:
            for name, source in tokenizer.items():
                atomic_write_bytes(folder / name, source.read_bytes())
            tok = json.dumps(tokenizer_config(config.block_size), indent=2).encode() + b"\n"
            atomic_write_bytes(folder / "tokenizer_config.json", tok)
        atomic_write_bytes(folder / "README.md", model_card(config, info or {}, report).encode())

    return write_folder(out_dir, fill, force)


def export_hf(checkpoint: str | Path, out_dir: str | Path, force: bool = False, dtype: str = "float32") -> Path:
    """A checkpoint's model (any kind, .pt or .safetensors) as a transformers folder; a full out_dir only if forced."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    check_out_dir(out_dir, force, source=checkpoint)  # before the slow load
    model, ckpt = load_model(checkpoint)
    info = {k: ckpt[k] for k in ("step", "loss", "val_loss") if isinstance(ckpt.get(k), (int, float))}
    try:
        figures = figures_beside(checkpoint, ckpt.get("step"))  # the run's report card, where it wrote one
        report = figures_table(figures) if figures else ""
        return export_hf_folder(model, out_dir, force=force, dtype=dtype, info=info, report=report)
    except ValueError as e:  # e.g. a model without biases, which transformers' GPT-2 cannot hold
        raise CheckpointError(checkpoint, str(e)) from None


# ----------------------------------------------------------------------------- import


def hf_folder(source: str | Path) -> Path:
    """A local transformers folder as it is; a Hub name ("gpt2") downloaded, config and weights only."""
    path = Path(source).expanduser()
    return path if path.is_dir() else download_model(str(source))


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a transformers folder: model*.safetensors, else pytorch_model.bin (weights only)."""
    shards = sorted(folder.glob("model*.safetensors"))
    try:
        if shards:
            from safetensors.torch import load_file

            state = {}
            for shard in shards:
                state.update(load_file(shard))
            return state
        bin_file = folder / "pytorch_model.bin"
        if bin_file.is_file():
            return torch.load(bin_file, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors' and torch.load's errors for a damaged file
        raise CheckpointError(folder, f"weights cannot be read ({describe(e)})") from None
    raise CheckpointError(folder, "has no model.safetensors or pytorch_model.bin")


def load_hf_gpt2(source: str | Path, block_size: int | None = None, dropout: float = 0.0) -> GPT:
    """Our GPT with a transformers GPT-2's weights, from a local folder or a Hub name such as "gpt2".

    block_size (default: the model's n_positions) keeps the first block_size position embeddings,
    as nanoGPT's crop_block_size does, so a shorter context trains faster.
    """
    folder = hf_folder(source)
    config_file = folder / "config.json"
    try:
        hf = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(config_file, f"cannot be read ({describe(e)})") from None
    config = gpt_config_from_hf(hf, config_file, block_size, dropout)
    return model_with_weights(config, from_hf_state_dict(read_hf_weights(folder), config, folder), folder)
