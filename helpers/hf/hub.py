"""The Hugging Face Hub: the token (argument, environment, Colab secret, `hf auth login`), download and upload.

huggingface_hub is imported only where it is used: the notebook trains without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers.errors import HubError, describe

TOKEN_NAME = "HF_TOKEN"  # the environment variable and the Colab secret


def colab_secret(name: str = TOKEN_NAME) -> str | None:
    """Colab's secret name, or None outside Colab, without the secret, or without access to it."""
    try:
        from google.colab import userdata
    except ImportError:
        return None  # not in Colab
    # No such secret, no access granted, or no answer to Colab's access prompt: missing_token_reason says which.
    expected = tuple(
        getattr(userdata, n)
        for n in ("SecretNotFoundError", "NotebookAccessError", "TimeoutException")
        if hasattr(userdata, n)
    )
    try:
        return userdata.get(name) or None
    except expected:
        return None


def hub_token(token: str | None = None) -> str | None:
    """The Hub token: the argument, else $HF_TOKEN, else Colab's secret HF_TOKEN, else `hf auth login`'s."""
    token = token or os.environ.get(TOKEN_NAME) or colab_secret()
    if token:
        return token
    try:
        from huggingface_hub import get_token
    except ImportError:
        return None  # no huggingface_hub: no stored login either
    return get_token()


def missing_token_reason() -> str:
    """Why hub_token() found no token, and what to do (in Colab: no secret, or one this notebook may not read)."""
    try:
        from google.colab import userdata
    except ImportError:
        return "no Hugging Face token: set HF_TOKEN, or run `hf auth login`"
    try:
        userdata.get("HF_TOKEN")
        return "the Colab secret HF_TOKEN is empty: paste a write token from huggingface.co/settings/tokens into it"
    except userdata.NotebookAccessError:
        return (
            "the Colab secret HF_TOKEN exists, but this notebook has no access to it: open the key panel "
            "(Secrets, on the left) and turn on 'Notebook access' for HF_TOKEN, then run this cell again"
        )
    except userdata.SecretNotFoundError:
        return (
            "no Hugging Face token: add the Colab secret HF_TOKEN (key panel on the left) holding a write token "
            "from huggingface.co/settings/tokens, give this notebook access to it, then run this cell again"
        )
    except Exception as e:  # e.g. a timeout asking for the secret
        return f"the Colab secret HF_TOKEN could not be read ({type(e).__name__}: {e})"


def download_model(repo_id: str) -> Path:
    """A Hub model's config.json and weights (safetensors, else the older pytorch_model.bin), cached; its folder."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=["config.json", "model*.safetensors"]))
        if not any(folder.glob("model*.safetensors")):  # older repositories have only the pickle
            folder = Path(snapshot_download(repo_id, allow_patterns=["config.json", "pytorch_model.bin"]))
    except (OSError, ValueError) as e:  # HTTP, offline and not-found errors are OSErrors; a bad repo id, a ValueError
        raise HubError(repo_id, f"not a local folder, and not downloadable from the Hub ({describe(e)})") from None
    return folder


# --hardware of a Gradio Space -> the Hub's hardware flavour. ZeroGPU's flavour keeps its old name.
SPACE_HARDWARE = {"cpu-basic": "cpu-basic", "zero-gpu": "zero-a10g"}


def space_kind(folder: Path) -> tuple[str, str | None]:
    """A Space folder's SDK and Hub hardware: ("gradio", flavour) for app.py, ("static", None) for index.html."""
    if (folder / "app.py").is_file():
        hardware = json.loads((folder / "space.json").read_text()).get("hardware", "cpu-basic")
        return "gradio", SPACE_HARDWARE[hardware]
    if (folder / "index.html").is_file():
        return "static", None
    raise HubError(folder, "is not a Space folder (no app.py or index.html)")


def refusal(repo_id: str, status: int, hardware: str | None) -> HubError:
    """The one line for a Hub that will not create a Gradio Space (402/403): what the account needs, the free way."""
    need = (
        "a free account in good standing (verified email, older than 30 days) may host two ZeroGPU Spaces, else PRO"
        if hardware == SPACE_HARDWARE["zero-gpu"]
        else "a Gradio Space on free cpu-basic hardware needs a PRO account "
        "(huggingface.co/subscribe/pro), or --hardware zero-gpu on a free account in good standing"
    )
    token = "; check too that the token may write to this namespace" if status == 403 else ""
    return HubError(
        repo_id,
        f"the Hub refused to create a Gradio Space on {hardware} (HTTP {status}): {need}{token}; "
        "a static Space (--kind static, the default) is free for everyone",
    )


def upload_to_hub(
    folder: str | Path, repo_id: str, token: str | None = None, private: bool = False, repo_type: str = "model"
) -> str | None:
    """Upload a folder to the Hub repository repo_id (created if need be); its URL, or None without a token.

    repo_type "model": an exported transformers folder; "space": a Space from helpers.hf.space (Gradio)
    or helpers.hf.static_space (static), created with that SDK (and a Gradio one on its hardware).
    """
    folder = Path(folder)
    if repo_type == "space":
        sdk, hardware = space_kind(folder)
        space = {"space_sdk": sdk, **({"space_hardware": hardware} if hardware else {})}
    elif not (folder / "config.json").is_file():
        raise HubError(folder, "is not an exported model folder (no config.json)")
    else:
        sdk, hardware, space = None, None, {}
    token = hub_token(token)
    if not token:
        return None
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, exist_ok=True, private=private, repo_type=repo_type, **space)
    except OSError as e:  # huggingface_hub's HTTP errors are OSErrors, with the response
        status = getattr(getattr(e, "response", None), "status_code", None)
        if sdk == "gradio" and status in (402, 403):
            raise refusal(repo_id, status, hardware) from None
        raise
    api.upload_folder(
        repo_id=repo_id, folder_path=str(folder), repo_type=repo_type, commit_message=f"Upload {folder.name}"
    )
    return str(url)
