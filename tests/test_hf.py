"""Hugging Face interop: safetensors deployment checkpoints, export to and import from transformers, upload."""

import json

import pytest
import torch

from conftest import TINY, full_ckpt, tiny_model
from helpers.checkpoints.format import DEPLOYMENT, CheckpointError, make_checkpoint
from helpers.checkpoints.storage import load_checkpoint, load_model, save_checkpoint
from helpers.commands.create_deployment_checkpoint import main as create_main
from helpers.commands.export_hf import main as export_main
from helpers.commands.test_deployment_checkpoint import main as check_main
from helpers.errors import HubError, OutputError
from helpers.hf import convert as hf_convert
from helpers.hf import folders as hf
from helpers.hf import hub, tokenizer_files
from helpers.model import GPT, GPTConfig

VOCAB = TINY.vocab_size


def full_logits(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Our logits at every position (forward gives all of them when there are targets)."""
    with torch.no_grad():
        logits, _ = model(idx, idx)
    return logits


@pytest.fixture(scope="module")
def model() -> GPT:
    return tiny_model().eval()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory) -> dict:
    """The tiny model as a full and a deployment checkpoint, and exported as a transformers folder."""
    root = tmp_path_factory.mktemp("hf")
    opt = model.configure_optimizer(0.1, 1e-3, (0.9, 0.95), fused=False)
    full = save_checkpoint(
        full_ckpt(model, opt, step=7, loss=2.5, history={"train": [[7, 2.5]], "val": []}), root / "full.pt"
    )
    deploy = save_checkpoint(
        make_checkpoint(DEPLOYMENT, step=7, model=model, loss=2.5, config={"preset": "test"}), root / "model_final.pt"
    )
    assert export_main([str(deploy), str(root / "export")]) == 0
    return {"root": root, "full": full, "deploy": deploy, "export": root / "export"}


def tokenizer_available() -> bool:
    try:
        tokenizer_files.gpt2_tokenizer_files()
    except FileNotFoundError:
        return False
    return True


# ----------------------------------------------------------------------------- safetensors


def test_safetensors_round_trip_stores_tied_weights_once(model, files, tmp_path):
    path = save_checkpoint(load_checkpoint(files["full"]), tmp_path / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert "lm_head.weight" not in f.keys() and "transformer.wte.weight" in f.keys()
        assert json.loads(f.metadata()["model_args"]) == TINY.to_dict()
        assert "optimizer_state_dict" not in f.metadata()
    ckpt = load_checkpoint(path)
    assert (ckpt["step"], ckpt["loss"], ckpt["config"], ckpt["kind"]) == (7, 2.5, {"preset": "test"}, DEPLOYMENT)
    assert ckpt["history"] == {"train": [[7, 2.5]], "val": []}
    state = model.state_dict()
    assert ckpt["model_state_dict"].keys() == state.keys()
    assert all(torch.equal(ckpt["model_state_dict"][k], v) for k, v in state.items())
    loaded, _ = load_model(path)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # re-tied
    idx = torch.randint(0, VOCAB, (1, 8))
    assert torch.equal(full_logits(loaded, idx), full_logits(model, idx))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_create_and_check_safetensors_deployment_checkpoint(files, tmp_path, dtype, capsys):
    out = tmp_path / "model_final.safetensors"
    assert create_main([str(files["full"]), str(out), "--dtype", dtype]) == 0
    assert out.read_bytes()[8:9] == b"{"  # a safetensors header, not a zip of pickles
    assert load_checkpoint(out)["model_state_dict"]["transformer.wte.weight"].dtype == getattr(torch, dtype)
    assert check_main([str(out), "--full", str(files["full"]), "--tokens", "5"]) == 0
    assert "all checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("payload", [b"", b"not a safetensors file at all", None])
def test_damaged_safetensors_is_a_one_line_error(files, tmp_path, payload, capsys):
    path = tmp_path / "bad.safetensors"
    if payload is None:  # truncated: a real file cut short
        good = save_checkpoint(load_checkpoint(files["deploy"]), tmp_path / "good.safetensors").read_bytes()
        payload = good[: len(good) // 2]
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_checkpoint(path)
    assert check_main([str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.safetensors" in err[0]


# ----------------------------------------------------------------------------- export CLI (no transformers needed)


def test_export_writes_a_transformers_folder(files):
    folder = files["export"]
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "README.md"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["vocab_size"], config["n_positions"]) == ("gpt2", VOCAB, 32)
    assert not [p for p in files["root"].iterdir() if p.name.startswith(".")]  # no temporaries left
    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    assert weights["transformer.wte.weight"].shape == (VOCAB, 32)
    assert weights["transformer.h.0.mlp.c_fc.weight"].shape == (32, 128)  # Conv1D layout (in, out)
    assert "lm_head.weight" not in weights


def test_export_tokenizer_files_are_tiktokens_gpt2_files(files):
    if not tokenizer_available():
        pytest.skip("tiktoken's gpt2 files are not available offline")
    found = tokenizer_files.gpt2_tokenizer_files()
    for name in ("vocab.json", "merges.txt"):
        assert (files["export"] / name).read_bytes() == found[name].read_bytes()
    vocab = json.loads(found["vocab.json"].read_text())
    assert len(vocab) == VOCAB and vocab[tokenizer_files.EOT] == tokenizer_files.EOT_ID
    assert found["merges.txt"].read_text().startswith("#version: 0.2")


def test_export_without_tokenizer_says_so_in_one_line_and_writes_the_model(files, tmp_path, monkeypatch, capsys):
    def missing():
        raise FileNotFoundError("no network")

    monkeypatch.setattr(hf, "gpt2_tokenizer_files", missing)
    assert export_main([str(files["deploy"]), str(tmp_path / "out")]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("no tokenizer")]
    assert len(notes) == 1 and "no network" in notes[0]
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "README.md",
    }


def test_export_refuses_non_empty_folder_unless_forced(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert export_main([str(files["deploy"]), str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "--force" in err[0]
    assert (out / "keep.txt").read_text() == "mine"
    assert export_main([str(files["deploy"]), str(out), "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the old folder and the temporary one are gone


def test_export_errors_name_the_file(files, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    cases = [
        (tmp_path / "missing.pt", "no such file"),
        (bad, "not a torch checkpoint"),
        (tmp_path / "missing.safetensors", "no such file"),
    ]
    for path, problem in cases:
        assert export_main([str(path), str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and problem in err[0]
    # --force must never delete the checkpoint being exported
    assert export_main([str(files["deploy"]), str(files["root"]), "--force"]) == 1
    assert "holds the checkpoint" in capsys.readouterr().err and files["deploy"].is_file()
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_model_without_biases(tmp_path, capsys):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, bias=False))
    path = save_checkpoint(
        make_checkpoint(DEPLOYMENT, step=1, model=model, loss=1.0, config={}), tmp_path / "nobias.pt"
    )
    assert export_main([str(path), str(tmp_path / "out")]) == 1
    assert "bias=False" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_folder_and_hub_problems_are_their_own_errors(files, tmp_path, monkeypatch):
    import huggingface_hub

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="out: is not empty; pass --force") as info:
        hf.export_hf(files["deploy"], out)
    assert not isinstance(info.value, CheckpointError)

    def offline(repo_id, allow_patterns):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(
        HubError,
        match=r"^someone/gpt2: not a local folder, and not downloadable from the Hub "
        r"\(OSError: Network is unreachable\)$",
    ) as info:
        hf.load_hf_gpt2("someone/gpt2")
    assert not isinstance(info.value, CheckpointError)


def test_the_library_warns_where_the_command_prints(files, model, tmp_path, monkeypatch):
    def missing():
        raise FileNotFoundError("no network")

    monkeypatch.setattr(hf, "gpt2_tokenizer_files", missing)
    with pytest.warns(UserWarning, match=r"no tokenizer files written \(no network\)"):
        hf.export_hf_folder(model, tmp_path / "out")


# ----------------------------------------------------------------------------- transformers


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


def test_exported_model_matches_ours_in_transformers(transformers, model, files):
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(files["export"]).eval()
    torch.manual_seed(1)
    idx = torch.randint(0, VOCAB, (2, TINY.block_size))
    with torch.no_grad():
        theirs = hf_model(idx).logits
    assert (full_logits(model, idx) - theirs).abs().max().item() <= 1e-4
    prompt = idx[:, :4]
    ours = model.generate(prompt, 20, top_k=1)  # top_k=1 samples the argmax: greedy
    greedy = hf_model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=20,
        do_sample=False,
        pad_token_id=tokenizer_files.EOT_ID,
    )
    assert torch.equal(ours, greedy)


def test_exported_folder_works_in_a_pipeline(transformers, model, files):
    if not tokenizer_available():
        pytest.skip("tiktoken's gpt2 files are not available offline")
    from helpers.data import get_encoding

    generate = transformers.pipeline("text-generation", model=str(files["export"]))
    text = generate("ROMEO:", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    enc = get_encoding()
    ours = model.generate(torch.tensor([enc.encode("ROMEO:")]), 8, top_k=1)
    assert text == enc.decode(ours[0].tolist())


def random_hf_model(transformers, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=32, vocab_size=VOCAB)
    return transformers.GPT2LMHeadModel(config).eval()


def test_import_matches_transformers_logits(transformers, tmp_path):
    hf_model = random_hf_model(transformers)
    hf_model.save_pretrained(tmp_path)
    ours = hf.load_hf_gpt2(tmp_path)
    assert ours.config == TINY
    assert ours.lm_head.weight is ours.transformer.wte.weight
    assert ours.transformer.wte.weight.shape == (VOCAB, 32)
    idx = torch.randint(0, VOCAB, (2, 32))
    with torch.no_grad():
        theirs = hf_model(idx).logits
    assert (full_logits(ours, idx) - theirs).abs().max().item() <= 1e-4


def test_import_reads_openai_style_pytorch_model_bin(transformers, tmp_path):
    hf_model = random_hf_model(transformers, seed=1)
    (tmp_path / "config.json").write_text(hf_model.config.to_json_string())
    # OpenAI's original files: bare key names, the causal-mask buffers, lm_head stored as well.
    state = {k.removeprefix("transformer."): v for k, v in hf_model.state_dict().items()}
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(32, 32)).view(1, 1, 32, 32)
    torch.save(state, tmp_path / "pytorch_model.bin")
    ours = hf.load_hf_gpt2(tmp_path, block_size=16)
    assert ours.config.block_size == 16 and ours.transformer.wpe.weight.shape == (16, 32)
    idx = torch.randint(0, VOCAB, (1, 16))
    with torch.no_grad():
        theirs = hf_model(idx).logits
    assert (full_logits(ours, idx) - theirs).abs().max().item() <= 1e-4


def test_export_then_import_is_bit_identical(model, files, tmp_path):
    back = hf.load_hf_gpt2(files["export"])
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        rows = slice(0, VOCAB) if key in ("transformer.wte.weight", "lm_head.weight") else slice(None)
        assert torch.equal(ours[key][rows], theirs[key][rows]), key
    # and a transformers model through import and export comes back bit for bit
    hf.export_hf_folder(back, tmp_path / "again")
    from safetensors.torch import load_file

    first, second = (
        load_file(files["export"] / "model.safetensors"),
        load_file(tmp_path / "again" / "model.safetensors"),
    )
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_import_by_hub_name_downloads_config_and_weights_only(files, tmp_path, monkeypatch):
    import fnmatch
    import shutil

    import huggingface_hub

    asked = []

    def fake_snapshot_download(repo_id, allow_patterns):  # the Hub, served from the exported folder
        asked.append((repo_id, allow_patterns))
        folder = tmp_path / f"snapshot{len(asked)}"
        folder.mkdir()
        for p in files["export"].iterdir():
            if any(fnmatch.fnmatch(p.name, pattern) for pattern in allow_patterns):
                shutil.copy(p, folder)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = hf.load_hf_gpt2("someone/tiny-gpt2")
    assert model.config == TINY
    assert asked == [("someone/tiny-gpt2", ["config.json", "model*.safetensors"])]
    assert {p.name for p in (tmp_path / "snapshot1").iterdir()} == {"config.json", "model.safetensors"}


def test_import_refuses_what_is_not_gpt2(transformers, tmp_path):
    hf_model = random_hf_model(transformers)
    hf_model.config.activation_function = "relu"
    hf_model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="config.json: activation_function='relu'"):
        hf.load_hf_gpt2(tmp_path)
    with pytest.raises(CheckpointError, match="block_size 64 is longer"):
        hf_convert.gpt_config_from_hf({"model_type": "gpt2", "n_positions": 32}, "config.json", block_size=64)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "vocab_size": VOCAB, "n_layer": 1, "n_head": 2, "n_embd": 8})
    )
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        hf.load_hf_gpt2(empty)


# ----------------------------------------------------------------------------- the Hub, faked


def test_upload_without_token_does_nothing(files, fake_hub, capsys):
    assert hub.upload_to_hub(files["export"], "me/gpt2-shakespeare") is None
    assert capsys.readouterr() == ("", "")  # the library says nothing; its callers say why (missing_token_reason)
    assert fake_hub == []


def test_upload_with_token_creates_repo_and_uploads(files, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    url = hub.upload_to_hub(files["export"], "me/gpt2-shakespeare")
    assert url == "https://huggingface.co/me/gpt2-shakespeare"
    assert fake_hub == [
        ("init", "hf_env"),
        ("create_repo", "me/gpt2-shakespeare", True, "model", None, None),
        ("upload_folder", "me/gpt2-shakespeare", str(files["export"]), "model"),
    ]


def test_export_cli_pushes_when_asked(files, fake_hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert export_main([str(files["deploy"]), str(tmp_path / "out"), "--push", "me/repo"]) == 0
    assert fake_hub[-1] == ("upload_folder", "me/repo", str(tmp_path / "out"), "model")


def test_upload_finds_the_colab_secret(files, fake_hub, fake_colab, monkeypatch):
    monkeypatch.setenv("FAKE_SECRETS", json.dumps({"HF_TOKEN": ["hf_colab", True]}))
    hub.upload_to_hub(files["export"], "me/repo")
    assert fake_hub[0] == ("init", "hf_colab")


@pytest.mark.parametrize(
    "secrets,expected",
    [
        ({}, "no Hugging Face token: add the Colab secret HF_TOKEN"),
        ({"HF_TOKEN": ["hf_x", False]}, "the Colab secret HF_TOKEN exists, but this notebook has no access to it"),
    ],
)
def test_missing_token_says_which_colab_problem(fake_hub, fake_colab, monkeypatch, secrets, expected):
    monkeypatch.setenv("FAKE_SECRETS", json.dumps(secrets))
    assert hub.hub_token() is None
    assert hub.missing_token_reason().startswith(expected)


def test_missing_token_outside_colab(fake_hub):
    assert hub.missing_token_reason().startswith("no Hugging Face token: set HF_TOKEN")
