"""Shared fixtures and helpers: the tiny model and its checkpoints, the prepared data, running the
notebook's .py as a script, a stand-in Hub and a stand-in Colab."""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.checkpoints.checkpointer import Checkpointer
from helpers.checkpoints.format import FULL, make_checkpoint
from helpers.checkpoints.storage import save_checkpoint
from helpers.config import make_config
from helpers.model import GPT, GPTConfig
from helpers.training.run_state import RunState

REPO = Path(__file__).resolve().parents[1]
FAKE_COLAB = Path(__file__).resolve().parent / "fake_colab"  # the stand-in google.colab
SCRIPT = REPO / "notebooks" / "train_gpt2_124m_colab.py"
NOTEBOOK = REPO / "notebooks" / "train_gpt2_124m_colab.ipynb"


# The tests' model: the ci preset's size (1.6M parameters, nearly all of them the token embedding).
TINY = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32)


def tiny_model(seed: int = 0, model_config: GPTConfig = TINY) -> GPT:
    """A freshly initialised model (TINY unless told), the same for the same seed."""
    torch.manual_seed(seed)
    return GPT(model_config)


class Scripted:
    """A stand-in model whose generate_stream yields the given tokens, counting how many it has yielded."""

    def __init__(self, tokens: list[int]):
        self.tokens = tokens
        self.yielded = 0

    def generate_stream(self, idx, max_new_tokens, **_):
        for t in self.tokens[:max_new_tokens]:
            self.yielded += 1
            yield torch.tensor([[t]])


def trained_tiny(steps: int = 1, seed: int = 0, model_config: GPTConfig = TINY) -> tuple[GPT, torch.optim.AdamW, float]:
    """The model and its AdamW after `steps` steps on random tokens, so the optimizer has state; the last loss."""
    model = tiny_model(seed, model_config)
    opt = model.configure_optimizer(0.1, 1e-3, (0.9, 0.95), fused=False)
    for _ in range(steps):
        x = torch.randint(0, model_config.vocab_size, (2, 16))
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model, opt, loss.item()


def full_ckpt(
    model: GPT,
    opt: torch.optim.Optimizer,
    step: int = 1,
    loss: float = 1.0,
    config: dict | None = None,
    **extra: object,
) -> dict:
    """A full checkpoint dict of model and opt, made by the project's make_checkpoint."""
    return make_checkpoint(
        FULL,
        step=step,
        model=model,
        loss=loss,
        optimizer=opt,
        config={"preset": "test"} if config is None else config,
        **extra,
    )


@functools.cache
def _trained_once(seed: int, model_args: tuple) -> tuple[GPT, torch.optim.AdamW]:
    """trained_tiny's model and optimizer, trained once a session: a step takes a few tenths of a second."""
    model, opt, _ = trained_tiny(seed=seed, model_config=GPTConfig(**dict(model_args)))
    return model, opt


def tiny_full_ckpt(step: int = 1, seed: int = 0, model_config: GPTConfig = TINY, **fields: object) -> dict:
    """The tiny model after one AdamW step, as a full checkpoint dict of its own (fields: full_ckpt's)."""
    model, opt = _trained_once(seed, tuple(model_config.to_dict().items()))
    return copy.deepcopy(full_ckpt(model, opt, step=step, **fields))


def save_full(path: Path, step: int = 1, seed: int = 0, **fields: object) -> Path:
    """The tiny model after one AdamW step, saved as a full checkpoint at path."""
    return save_checkpoint(tiny_full_ckpt(step, seed, **fields), path)


def tiny_checkpointer(folder: Path, seed: int = 0, **settings: object) -> Checkpointer:
    """A Checkpointer on folder for the tiny model after one AdamW step, as the notebook registers its pieces.

    The ci preset with these settings (GPT2_* names, lower case, as script_env takes them).
    """
    model, opt, _ = trained_tiny(seed=seed)
    cfg = make_config("ci", env={f"GPT2_{name.upper()}": str(value) for name, value in settings.items()})
    scaler, sampler = torch.amp.GradScaler("cpu", enabled=False), torch.Generator().manual_seed(seed)
    pieces = dict(model_state_dict=model, optimizer_state_dict=opt, scaler_state_dict=scaler, sampler_state=sampler)
    return Checkpointer(folder, cfg, {}, pieces, RunState.start(cfg), main=True)


def script_env(checkpoint_dir: Path, **settings: object) -> dict:
    """The environment for one script run: the ci preset, the session's data, these settings."""
    env = dict(os.environ)
    env["GPT2_CHECKPOINT_DIR"] = str(checkpoint_dir)
    env["PYTHONHASHSEED"] = "0"
    # The ci model is tiny: one thread per process is faster than two fighting over 2 cores.
    env["OMP_NUM_THREADS"] = "1"
    for name, value in settings.items():
        env[f"GPT2_{name.upper()}"] = str(value)
    return env


def sitecustomize_env(directory: Path, code: str) -> dict:
    """Environment variables under which every new Python process runs code first (as sitecustomize)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(code)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))}


def run_script(
    checkpoint_dir: Path,
    timeout: float = 300,
    check: bool = True,
    python_args: tuple = (),
    extra_env: dict | None = None,
    **settings: object,
) -> subprocess.CompletedProcess:
    """Run the notebook's .py to completion on the ci preset; fail the test if it fails.

    python_args go before the script, e.g. ("-m", "torch.distributed.run", "--nproc_per_node=2").
    """
    env = dict(script_env(checkpoint_dir, **settings), **(extra_env or {}))
    proc = subprocess.run(
        [sys.executable, *python_args, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"script exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n"
            f"--- stderr ---\n{proc.stderr[-5000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The session's tiny Shakespeare, tokenised."""
    from helpers.data import SHAKESPEARE_URL, prepare_data

    path = Path(os.environ["GPT2_DATA_DIR"])
    prepare_data(path, os.environ.get("GPT2_DATA_URL", SHAKESPEARE_URL))
    return path


@pytest.fixture
def one_thread():
    """Torch on one thread: for tiny models, two threads on a busy machine wait on each other (ten times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One full ci-preset run of the notebook's .py, shared by the tests that only read its files."""
    checkpoint_dir = tmp_path_factory.mktemp("ci-run")
    return checkpoint_dir, run_script(checkpoint_dir)


# The ci model over-fitting 905 training tokens (3.5 steps an epoch): an evaluation every 2 steps,
# patience 4; periodic saves come from the clock alone (every step: any step takes longer than
# 60 microseconds), so the run leaves the full state of every step behind.
OVERFIT = dict(
    train_fraction=0.003,
    eval_every=2,
    max_steps=80,
    patience=4,
    save_every=1000,
    save_every_minutes=1e-6,
    keep_last=100,
)


@pytest.fixture(scope="session")
def overfit_run(tmp_path_factory) -> tuple[Path, dict]:
    """One uninterrupted OVERFIT run, which stops early: its folder and run_summary.json."""
    checkpoint_dir = tmp_path_factory.mktemp("overfit")
    run_script(checkpoint_dir, **OVERFIT)
    return checkpoint_dir, json.loads((checkpoint_dir / "run_summary.json").read_text())


def tensorboard_events(folder: Path) -> tuple[dict, dict]:
    """TensorBoard's own reader over a run folder's tensorboard/: {tag: [(step, value)]}, {text tag: [step]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    texts = {tag: [e.step for e in acc.Tensors(tag)] for tag in acc.Tags()["tensors"]}
    return scalars, texts


class FakeHfApi:
    """huggingface_hub.HfApi's stand-in: records each call in FakeHfApi.calls, reaches no network.

    refuse maps a Space SDK to the HTTP status the stand-in answers when asked to create one (the
    real Hub answers 402 to a free account's Gradio Space on cpu-basic).
    """

    calls: list = []
    refuse: dict = {}

    def __init__(self, token=None):
        FakeHfApi.calls.append(("init", token))

    def create_repo(self, repo_id, exist_ok=False, private=False, repo_type=None, space_sdk=None, space_hardware=None):
        FakeHfApi.calls.append(("create_repo", repo_id, exist_ok, repo_type, space_sdk, space_hardware))
        if space_sdk in FakeHfApi.refuse:
            from huggingface_hub import errors

            # the HTTP library huggingface_hub answers with: httpx in 1.x (Colab's), httpx2 in 2.x
            http = sys.modules[errors.Response.__module__.split(".")[0]]
            status = FakeHfApi.refuse[space_sdk]
            request = http.Request("POST", "https://huggingface.co/api/repos/create")
            raise errors.HfHubHTTPError(
                f"{status} Client Error for url: {request.url}", response=http.Response(status, request=request)
            )
        return f"https://huggingface.co/{'spaces/' if repo_type == 'space' else ''}{repo_id}"

    def upload_folder(self, repo_id, folder_path, repo_type=None, commit_message=None):
        FakeHfApi.calls.append(("upload_folder", repo_id, folder_path, repo_type))


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """The Hub replaced by FakeHfApi, with no token anywhere (set HF_TOKEN to give one); the calls."""
    import huggingface_hub

    FakeHfApi.calls, FakeHfApi.refuse = [], {}
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored login either
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
    return FakeHfApi.calls


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """The stand-in google.colab (tests/fake_colab), importable in this process; its log in tmp_path."""
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(FAKE_COLAB))
    monkeypatch.setenv("FAKE_COLAB_LOG", str(tmp_path / "colab.log"))
    monkeypatch.setenv("FAKE_DRIVE", str(tmp_path / "cloud"))
    import google.colab

    yield google.colab
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        del sys.modules[name]  # the stand-in's modules; monkeypatch then puts back any real ones
