"""Hugging Face interop: our GPT to a transformers GPT-2 folder and back, and upload to the Hub.

Our model and transformers' `GPT2LMHeadModel` are the same network, with one difference in the
weights: transformers' GPT-2 uses `Conv1D` layers, which store their weight as (in, out), so the
c_attn, c_proj and c_fc weights are the transposes of our `nn.Linear` ones.

The folder written here loads with `GPT2LMHeadModel.from_pretrained(folder)` and
`pipeline("text-generation", model=folder)` with no code of ours. Nothing here needs
transformers itself; safetensors and huggingface_hub are imported only where they are used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

from helpers.checkpoint import DTYPES, CheckpointError, model_with_weights, unwrap_model
from helpers.fileio import UMASK, atomic_write_bytes, fsync_dir
from helpers.model import GPT2_VOCAB_SIZE, GPT, GPTConfig

# Linear weights that transformers' GPT-2 keeps transposed (its Conv1D stores (in, out)).
TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
EOT_ID = 50256  # <|endoftext|>: GPT-2's bos, eos and unk token
EOT = "<|endoftext|>"
# tiktoken's two files for the "gpt2" encoding are GPT-2's tokenizer files under other names:
# encoder.json is vocab.json and vocab.bpe is merges.txt. URL (tiktoken's cache key) and sha256:
GPT2_TOKENIZER_FILES = {
    "vocab.json": ("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
                   "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
    "merges.txt": ("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
                   "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
}
# What transformers' GPT2Config must say for its network to be ours.
SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both are GELU's tanh approximation


# ----------------------------------------------------------------------------- weights

def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under GPT2LMHeadModel's names, Conv1D weights transposed."""
    out = {}
    for key, t in model.state_dict().items():
        if key == "lm_head.weight":
            continue  # tied to wte; transformers re-ties it (tie_word_embeddings)
        if key.endswith(TRANSPOSED):
            t = t.t()
        out[key] = t.detach().cpu().contiguous()  # safetensors stores contiguous tensors only
    return out


def from_hf_state_dict(hf_state: dict[str, torch.Tensor], config: GPTConfig, where: str | Path) -> dict[str, torch.Tensor]:
    """A transformers GPT-2 state dict as ours: transposed back, wpe cropped to block_size."""
    state = {}
    for key, t in hf_state.items():
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # causal-mask buffers that older transformers versions saved; ours has none
        if key != "lm_head.weight" and not key.startswith("transformer."):
            key = "transformer." + key  # OpenAI's original files name the base model's keys bare
        if key.endswith(TRANSPOSED):
            t = t.t()
        state[key] = t.float().contiguous()
    wte = state.get("transformer.wte.weight")
    if wte is None or wte.shape[0] != config.vocab_size:
        raise CheckpointError(where, f"no token embedding of {config.vocab_size} rows (transformer.wte.weight)")
    head = state.pop("lm_head.weight", None)
    if head is not None and not torch.equal(head.float(), wte):
        raise CheckpointError(where, "lm_head.weight differs from the token embedding; only tied GPT-2 models can be imported")
    state["lm_head.weight"] = wte
    if "transformer.wpe.weight" in state:
        state["transformer.wpe.weight"] = state["transformer.wpe.weight"][: config.block_size].contiguous()
    return state


# ----------------------------------------------------------------------------- configs

def hf_config(config: GPTConfig, dtype: str = "float32") -> dict:
    """transformers' GPT2Config, as the config.json that describes our architecture."""
    if not config.bias:
        raise ValueError("a model without biases (bias=False) has no transformers GPT-2 equivalent")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,  # 4 * n_embd
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": 1e-5,  # nn.LayerNorm's default
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": EOT_ID,
        "eos_token_id": EOT_ID,
        "torch_dtype": dtype,  # transformers 4.x's name
        "dtype": dtype,  # transformers 5.x's name
    }


def gpt_config_from_hf(hf: dict, where: str | Path, block_size: int | None = None, dropout: float = 0.0) -> GPTConfig:
    """Our GPTConfig for a transformers GPT-2 config.json; a CheckpointError if the network differs."""
    def differs(key: str, ok: Callable[[object], bool], default: object) -> None:
        value = hf.get(key, default)
        if not ok(value):
            raise CheckpointError(where, f"{key}={value!r} is not supported (this GPT is OpenAI's GPT-2 design)")

    differs("model_type", lambda v: v == "gpt2", None)
    differs("activation_function", lambda v: v in SUPPORTED_ACTIVATIONS, "gelu_new")
    differs("n_inner", lambda v: v is None or v == 4 * hf.get("n_embd", 768), None)
    differs("layer_norm_epsilon", lambda v: v == 1e-5, 1e-5)
    differs("scale_attn_weights", lambda v: v is True, True)
    differs("scale_attn_by_inverse_layer_idx", lambda v: v is False, False)
    differs("add_cross_attention", lambda v: v is False, False)
    differs("tie_word_embeddings", lambda v: v is True, True)
    n_positions = hf.get("n_positions", 1024)
    block_size = block_size or n_positions
    if block_size > n_positions:
        raise CheckpointError(where, f"block_size {block_size} is longer than the model's {n_positions} positions")
    try:
        return GPTConfig(block_size=block_size, vocab_size=hf["vocab_size"], n_layer=hf["n_layer"],
                         n_head=hf["n_head"], n_embd=hf["n_embd"], dropout=dropout, bias=True)
    except KeyError as e:
        raise CheckpointError(where, f"config.json lacks {e.args[0]}") from None


# ----------------------------------------------------------------------------- tokenizer

def tiktoken_cache_dir() -> Path | None:
    """Where tiktoken caches its downloads (its own rule), or None when caching is disabled."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return Path(os.environ[var]) if os.environ[var] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def gpt2_tokenizer_files() -> dict[str, Path]:
    """GPT-2's vocab.json and merges.txt from tiktoken's cache (downloaded there if need be); FileNotFoundError says why not."""
    import tiktoken

    try:
        tiktoken.get_encoding("gpt2")  # downloads the two files into tiktoken's cache if missing
    except Exception as e:
        raise FileNotFoundError(f"tiktoken cannot load its gpt2 encoding ({type(e).__name__}: {str(e)[:120]})") from None
    cache = tiktoken_cache_dir()
    if cache is None:
        raise FileNotFoundError("tiktoken's cache is disabled (TIKTOKEN_CACHE_DIR is empty)")
    files = {}
    for name, (url, sha256) in GPT2_TOKENIZER_FILES.items():
        path = cache / hashlib.sha1(url.encode()).hexdigest()  # tiktoken names cached files so
        if not path.is_file():
            raise FileNotFoundError(f"{path} (tiktoken's copy of {url.rsplit('/', 1)[1]}) is missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
            raise FileNotFoundError(f"{path} is not GPT-2's {url.rsplit('/', 1)[1]} (sha256 differs)")
        files[name] = path
    return files


def tokenizer_config(block_size: int) -> dict:
    """tokenizer_config.json for GPT-2's tokenizer with our context length."""
    return {"tokenizer_class": "GPT2Tokenizer", "model_max_length": block_size, "add_prefix_space": False,
            "bos_token": EOT, "eos_token": EOT, "unk_token": EOT, "errors": "replace"}


# ----------------------------------------------------------------------------- export

def model_card(config: GPTConfig, info: dict) -> str:
    """A short README.md for the Hub page."""
    trained = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
    return "\n".join([
        "---", "library_name: transformers", "pipeline_tag: text-generation", "tags: [gpt2]", "---", "",
        f"# GPT-2 ({config.n_layer} layers, width {config.n_embd}, context {config.block_size}) trained on tiny Shakespeare",
        "", f"Exported from a checkpoint at {trained}." if trained else "", "",
        "```python", "from transformers import pipeline", "",
        'generate = pipeline("text-generation", model="path/to/this/folder/or/user/repo")',
        'print(generate("ROMEO:", max_new_tokens=50)[0]["generated_text"])', "```", "",
    ])


def check_out_dir(source: Path, out_dir: Path, force: bool = False) -> None:
    """Refuse an out_dir that holds source, or that is not empty unless forced."""
    if out_dir.resolve() in source.resolve().parents:
        # --force replaces out_dir whole: it would delete the checkpoint it is exporting.
        raise CheckpointError(out_dir, f"holds the checkpoint {source.name}; choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise CheckpointError(out_dir, "is not empty; pass --force to replace it")


def write_folder(out_dir: str | Path, fill: Callable[[Path], None], force: bool = False) -> Path:
    """Fill a temporary folder beside out_dir, then rename it into place: never half a folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError(out_dir, "exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise CheckpointError(out_dir, "is not empty; pass --force to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Not named with fileio's TMP_MARK: remove_stale_temporaries() deletes files only.
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes folders private (0700)
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out_dir.exists():
            os.replace(old, out_dir)  # put the previous folder back
        raise
    shutil.rmtree(old, ignore_errors=True)
    fsync_dir(out_dir.parent)
    return out_dir


def export_hf_folder(model: GPT, out_dir: str | Path, force: bool = False, dtype: str = "float32",
                     info: dict | None = None, report: Callable[[str], None] = print) -> Path:
    """Write model as a transformers GPT-2 folder: config, weights, tokenizer files when they can be had."""
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
            report(f"no tokenizer files written ({e}); load the tokenizer from the Hub's 'gpt2' instead")

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
        atomic_write_bytes(folder / "README.md", model_card(config, info or {}).encode())

    return write_folder(out_dir, fill, force)


# ----------------------------------------------------------------------------- import

def hf_folder(source: str | Path) -> Path:
    """A local transformers folder as it is; a Hub name ("gpt2") downloaded, config and weights only."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(str(source), allow_patterns=["config.json", "model*.safetensors"]))
        if not any(folder.glob("model*.safetensors")):  # older repositories have only the pickle
            folder = Path(snapshot_download(str(source), allow_patterns=["config.json", "pytorch_model.bin"]))
    except Exception as e:
        raise CheckpointError(source, f"not a local folder, and not downloadable from the Hub ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    return folder


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
    except Exception as e:
        raise CheckpointError(folder, f"weights cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
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
        raise CheckpointError(config_file, f"cannot be read ({type(e).__name__}: {e})") from None
    config = gpt_config_from_hf(hf, config_file, block_size, dropout)
    return model_with_weights(config, from_hf_state_dict(read_hf_weights(folder), config, folder), folder)


# ----------------------------------------------------------------------------- the Hub

def hub_token(token: str | None = None) -> str | None:
    """The Hub token: the argument, else $HF_TOKEN, else Colab's secret HF_TOKEN, else `hf auth login`'s."""
    if token:
        return token
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    try:
        from google.colab import userdata

        return userdata.get("HF_TOKEN") or None
    except Exception:  # not in Colab, no such secret, or the notebook was not granted access
        pass
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        return None


def missing_token_reason() -> str:
    """Why hub_token() found no token, with what to do: in Colab, no secret told apart from a secret this notebook may not read."""
    try:
        from google.colab import userdata
    except ImportError:
        return "no Hugging Face token: set HF_TOKEN, or run `hf auth login`"
    try:
        userdata.get("HF_TOKEN")
        return "the Colab secret HF_TOKEN is empty: paste a write token from huggingface.co/settings/tokens into it"
    except userdata.NotebookAccessError:
        return ("the Colab secret HF_TOKEN exists, but this notebook has no access to it: open the key panel "
                "(Secrets, on the left) and turn on 'Notebook access' for HF_TOKEN, then run this cell again")
    except userdata.SecretNotFoundError:
        return ("no Hugging Face token: add the Colab secret HF_TOKEN (key panel on the left) holding a write token "
                "from huggingface.co/settings/tokens, give this notebook access to it, then run this cell again")
    except Exception as e:  # e.g. a timeout asking for the secret
        return f"the Colab secret HF_TOKEN could not be read ({type(e).__name__}: {e})"


def upload_to_hub(folder: str | Path, repo_id: str, token: str | None = None, private: bool = False,
                  repo_type: str = "model") -> str | None:
    """Upload a folder to the Hub repository repo_id (created if need be); its URL, or None without a token.

    repo_type "model": an exported transformers folder; "space": a Gradio Space from helpers.make_space.
    """
    folder = Path(folder)
    marker = {"model": "config.json", "space": "app.py"}[repo_type]
    if not (folder / marker).is_file():
        raise CheckpointError(folder, f"is not an exported {repo_type} folder (no {marker})")
    token = hub_token(token)
    if not token:
        print(f"not uploading {folder} to the Hub: no token (pass token=, set HF_TOKEN, or add the Colab secret HF_TOKEN)")
        return None
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    space = {"space_sdk": "gradio"} if repo_type == "space" else {}
    url = api.create_repo(repo_id, exist_ok=True, private=private, repo_type=repo_type, **space)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type, commit_message=f"Upload {folder.name}")
    print(f"uploaded {folder} to {url}")
    return str(url)
