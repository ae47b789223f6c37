"""The sampling controls: transformers' repetition penalty, temperature, top-k, top-p in generate; stop strings."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch

from conftest import Scripted, save_full, tiny_model
from helpers.checkpoints.storage import load_checkpoint, load_model, save_checkpoint
from helpers.commands.create_deployment_checkpoint import main as create_main
from helpers.commands.sample import add_sampling_arguments, sampling_options
from helpers.commands.sample import main as sample_main
from helpers.data import get_encoding
from helpers.hf import tokenizer_files
from helpers.hf.folders import export_hf_folder
from helpers.model import GPT, GPTConfig, penalize_repeats, warp
from helpers.sampling import parse_stops, text_stream
from helpers.ui.playground import sample, sample_stream


def varied_model(block_size: int) -> GPT:
    """A small model whose greedy text changes token by token (its matrices scaled up), with a long context."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=block_size))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(5 if p.dim() == 2 else 1)
    return model.eval()


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


@pytest.mark.parametrize(
    "vocab, penalty, temperature, top_k, top_p",
    [
        (1000, 1.3, 0.7, 50, 0.9),
        (1000, 0.8, 1.0, None, 0.5),
        (1000, 1.0, 1.3, 20, None),
        (1000, 2.0, 0.5, None, None),
        (1000, 1.0, 1.0, 0, 0.99),
        (50257, 1.3, 0.8, None, 0.6),  # the likeliest 1024 tokens decide (NUCLEUS_FIRST)
        (50257, 1.3, 0.8, None, 0.95),  # the others hold more than 1 - top_p: the whole vocabulary sorted
    ],
)
def test_processors_equal_transformers_on_random_logits(transformers, vocab, penalty, temperature, top_k, top_p):
    """The tokens each control leaves out (-inf) and the distribution of the rest are those of transformers' own
    processors, applied in their order."""
    from transformers.generation import logits_process as lp

    torch.manual_seed(0)
    logits = torch.randn(3, vocab) * 3
    ids = torch.randint(0, vocab, (3, 40))
    theirs = [lp.RepetitionPenaltyLogitsProcessor(penalty), lp.TemperatureLogitsWarper(temperature)]
    if top_k:
        theirs.append(lp.TopKLogitsWarper(top_k))
    if top_p is not None:
        theirs.append(lp.TopPLogitsWarper(top_p))
    want = lp.LogitsProcessorList(theirs)(ids, logits.clone())
    kept, indices = warp(penalize_repeats(logits, ids, penalty), temperature, top_k, top_p)
    got = kept if indices is None else torch.full_like(logits, float("-inf")).scatter(1, indices, kept)
    assert torch.equal(got.isinf(), want.isinf()) and (got.isinf().sum() > 0) == bool(top_k or top_p)
    assert torch.allclose(got.softmax(dim=-1), want.softmax(dim=-1), atol=1e-6)


def test_greedy_with_a_repetition_penalty_is_transformers_past_100_tokens(transformers, tmp_path):
    model = varied_model(block_size=160)
    folder = export_hf_folder(model, tmp_path / "hf")
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    prompt = torch.tensor([get_encoding().encode("ROMEO:\nWhat say you?")])
    ours = model.generate(prompt, 120, top_k=1, repetition_penalty=1.3)
    theirs = hf_model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=120,
        do_sample=False,
        repetition_penalty=1.3,
        pad_token_id=tokenizer_files.EOT_ID,
    )
    assert torch.equal(ours, theirs)
    plain = model.generate(prompt, 120, top_k=1)[0, prompt.size(1) :].tolist()
    assert ours[0, prompt.size(1) :].tolist() != plain  # the penalty changed the text
    assert len(set(ours[0].tolist())) > len(set(plain))  # into one that repeats itself less


@pytest.mark.parametrize("top_k", [None, 200])
def test_top_p_so_small_that_one_token_is_left_is_greedy(top_k):
    model, prompt = varied_model(block_size=64), torch.tensor([[1, 2, 3]])
    greedy = model.generate(prompt, 40, top_k=1, repetition_penalty=1.2)
    assert torch.equal(model.generate(prompt, 40, 0.8, top_k, seed=5, top_p=1e-6, repetition_penalty=1.2), greedy)
    assert not torch.equal(model.generate(prompt, 40, 0.8, top_k, seed=5, top_p=0.9), greedy)  # a real draw


def test_the_controls_switched_off_leave_the_seeded_draws_as_they_were():
    model, prompt = varied_model(block_size=64), torch.tensor([[1, 2, 3]])
    before = model.generate(prompt, 30, 0.8, 200, seed=7)
    assert torch.equal(model.generate(prompt, 30, 0.8, 200, seed=7, top_p=1.0, repetition_penalty=1.0), before)
    on = model.generate(prompt, 30, 0.8, 200, seed=7, top_p=0.8, repetition_penalty=1.3)
    assert torch.equal(model.generate(prompt, 30, 0.8, 200, seed=7, top_p=0.8, repetition_penalty=1.3), on)


@pytest.mark.parametrize(
    "control, value, message",
    [
        ("top_p", 0.0, "top_p must be above 0"),
        ("top_p", 1.5, "top_p must be above 0"),
        ("repetition_penalty", 0.0, "repetition_penalty must be positive"),
        ("top_k", -1, "top_k must be 0"),
        ("temperature", 0.0, "temperature must be positive"),
    ],
)
def test_controls_out_of_range_are_refused(control, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_model().generate(torch.tensor([[1]]), 2, **{control: value})


# ----------------------------------------------------------------------------- stop strings


def pieces_until(tokens: list[int], stop: list[str], prompt: str = "A") -> list[str]:
    enc = get_encoding()
    return list(sample_stream(Scripted(tokens), enc, prompt, len(tokens), 1.0, "cpu", stop=stop))


def test_the_text_ends_before_the_first_stop_string_even_across_tokens():
    enc = get_encoding()
    tokens = enc.encode(" to be, or not to be: that is the question")
    # "or not" spans the tokens " or" and " not"; "be" comes earlier but is not a stop string here
    pieces = pieces_until(tokens, ["not to", "question"])
    assert "".join(pieces) == "A to be, or "
    assert all("n" not in p for p in pieces)  # " not" was held back, never shown and then taken back
    assert "".join(pieces_until(tokens, ["question", "that"])) == "A to be, or not to be: "  # the first of them
    assert "".join(pieces_until(tokens, ["tobe"])) == "A to be, or not to be: that is the question"  # none


def test_text_held_back_for_a_stop_string_that_does_not_come_is_shown_after_all():
    enc = get_encoding()
    tokens = enc.encode(" not then, nor now")
    pieces = pieces_until(tokens, ["not now"])
    assert "".join(pieces) == "A not then, nor now" and " not" not in pieces
    pieces = pieces_until(enc.encode(" the end: no"), [": not"])  # the text ends inside the held-back part
    assert "".join(pieces) == "A the end: no"


def test_a_stop_string_in_the_prompt_does_not_count_and_generation_stops():
    enc = get_encoding()
    stream = Scripted(enc.encode("\nJULIET:\nAy me!\n\nROMEO:\nShe speaks."))
    pieces = list(text_stream(enc.encode("ROMEO:\n\n"), stream.generate_stream(None, 100), enc.decode, ["\n\n"]))
    assert "".join(pieces) == "ROMEO:\n\n\nJULIET:\nAy me!"
    assert stream.yielded == 12  # "\n\n" ends with the 12th token: closed there, none drawn past it


def test_generated_text_stops_in_pytorch_and_joins_up_to_the_sample():
    model, enc = tiny_model(0), get_encoding()
    full = sample(model, enc, "ROMEO:", 30, 1.0, "cpu", seed=3, top_k=None)
    stop = full[len("ROMEO:") :][10:14]
    cut = sample(model, enc, "ROMEO:", 30, 1.0, "cpu", seed=3, top_k=None, stop=[stop])
    assert cut == full[: full.index(stop, len("ROMEO:"))] and len(cut) >= len("ROMEO:") + 10


def test_stop_fields_read_one_per_line_with_escaped_newlines():
    assert parse_stops("\\n\\n\nKING:\n\nEnd.") == ["\n\n", "KING:", "End."]
    with pytest.raises(ValueError, match="stop string"):
        list(text_stream([1], iter([2]), get_encoding().decode, [""]))


# ----------------------------------------------------------------------------- python -m helpers.sample

SETTINGS = ["--prompt", "JULIET:", "--tokens", "20", "--top-p", "0.9", "--repetition-penalty", "1.2", "--seed", "4"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    """The tiny model as a full checkpoint, a deployment one in .pt and .safetensors, and a transformers folder."""
    root = tmp_path_factory.mktemp("sample")
    full = save_full(root / "model_final_full.pt")
    assert create_main([str(full), str(root / "model_final.pt")]) == 0
    deploy = root / "model_final.pt"
    safetensors = save_checkpoint(load_checkpoint(deploy), root / "model_final.safetensors")
    folder = export_hf_folder(load_model(full)[0], root / "hf")
    return {"full": full, "deploy": deploy, "safetensors": safetensors, "hf": folder}


@pytest.mark.parametrize("kind", ["full", "deploy", "safetensors", "hf"])
def test_sample_prints_the_text_of_any_checkpoint(checkpoints, kind, capsys):
    model, _ = load_model(checkpoints["full"])
    want = sample(model, get_encoding(), "JULIET:", 20, 0.8, "cpu", 4, top_k=200, top_p=0.9, repetition_penalty=1.2)
    assert sample_main([str(checkpoints[kind]), *SETTINGS]) == 0
    assert capsys.readouterr().out == want + "\n"


def test_sample_stops_at_a_stop_string_with_escaped_newlines(checkpoints, capsys):
    assert sample_main([str(checkpoints["deploy"]), *SETTINGS, "--tokens", "60"]) == 0
    text = capsys.readouterr().out[len("JULIET:") : -1]
    stop = text[30:33]
    assert sample_main([str(checkpoints["deploy"]), *SETTINGS, "--tokens", "60", "--stop", "no such", stop]) == 0
    assert capsys.readouterr().out == "JULIET:" + text[: text.index(stop)] + "\n"
    parser = argparse.ArgumentParser()
    add_sampling_arguments(parser)
    assert sampling_options(parser, parser.parse_args(["--stop", "\\n\\n", "KING:"]))["stop"] == ["\n\n", "KING:"]


@pytest.mark.parametrize(
    "args, problem",
    [
        (["missing.pt"], "missing.pt: no such file"),
        (["damaged.pt"], "damaged.pt"),
        (["{deploy}", "--top-p", "0"], "--top-p must be above 0"),
        (["{deploy}", "--repetition-penalty", "-1"], "--repetition-penalty must be positive"),
        (["{deploy}", "--temperature", "0"], "--temperature must be positive"),
        (["{deploy}", "--tokens", "0"], "--tokens 0: must be at least 1"),
        (["{deploy}", "--stop", ""], "--stop: a stop string must be some text"),
        (["{deploy}", "--device", "cuda:7"], "no CUDA GPU"),
    ],
)
def test_sample_bad_input_is_one_line(checkpoints, tmp_path, monkeypatch, args, problem, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "damaged.pt").write_bytes(b"not a checkpoint")
    try:
        rc = sample_main([a.format(deploy=checkpoints["deploy"]) for a in args])
    except SystemExit as e:  # argparse's own: usage, then the one line
        rc = e.code
    out, err = capsys.readouterr()
    assert rc != 0 and out == "" and problem in err.strip().splitlines()[-1], err


@pytest.mark.slow  # a fresh interpreter
def test_sample_runs_as_a_module(checkpoints):
    model, _ = load_model(checkpoints["deploy"])
    want = sample(model, get_encoding(), "JULIET:", 20, 0.8, "cpu", 4, top_k=200, top_p=0.9, repetition_penalty=1.2)
    run = subprocess.run(
        [sys.executable, "-m", "helpers.sample", str(checkpoints["deploy"]), *SETTINGS, "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, want + "\n", "")
