import dataclasses
import math

import pytest
import torch

from conftest import TINY, tiny_model
from helpers.model import GPT, GPT2_VOCAB_SIZE, GPTConfig, KVBuffer


def test_default_config_is_gpt2_124m():
    c = GPTConfig()
    assert (c.n_layer, c.n_head, c.n_embd, c.block_size, c.vocab_size) == (12, 12, 768, 1024, 50257)


def test_gpt2_124m_parameter_count():
    model = GPT(GPTConfig())
    # OpenAI's GPT-2 124M: 124,439,808 parameters (the tied embedding counted once)
    assert model.num_params() == 124_439_808
    assert model.transformer.wte.weight.shape == (50257, 768)


def test_output_shapes_and_tied_weights():
    model = GPT(TINY)
    x = torch.randint(0, GPT2_VOCAB_SIZE, (3, 16))
    logits, loss = model(x, x)
    assert logits.shape == (3, 16, TINY.vocab_size)
    assert loss.shape == ()
    logits, loss = model(x)
    assert logits.shape == (3, 1, TINY.vocab_size) and loss is None
    assert model.lm_head.weight is model.transformer.wte.weight


def test_no_mask_buffer_in_state_dict():
    model = GPT(TINY)
    assert list(model.buffers()) == []  # so the state dict holds the parameters alone


def test_initial_loss_is_uniform_over_vocabulary():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=4, n_embd=128, block_size=64))
    x = torch.randint(0, GPT2_VOCAB_SIZE, (4, 64))
    y = torch.randint(0, GPT2_VOCAB_SIZE, (4, 64))
    _, loss = model(x, y)
    assert abs(loss.item() - math.log(GPT2_VOCAB_SIZE)) < 0.3  # ln(50257) = 10.82


def test_gpt2_init_scales_residual_projections():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=8, n_head=4, n_embd=256, block_size=32))
    proj = model.transformer.h[0].attn.c_proj.weight
    fc = model.transformer.h[0].mlp.c_fc.weight
    assert abs(fc.std().item() - 0.02) < 0.002
    assert abs(proj.std().item() - 0.02 / math.sqrt(16)) < 0.001


def test_generate_is_reproducible_for_a_seed_and_stays_in_vocabulary():
    model = GPT(TINY)
    idx = torch.zeros((1, 1), dtype=torch.long)
    # 10 tokens: sampling over 50,257 is slow on a CPU (25 ms a token), and 10 draws tell two seeds apart
    a = model.generate(idx, 10, temperature=1.0, top_k=None, seed=7)
    b = model.generate(idx, 10, temperature=1.0, top_k=None, seed=7)
    c = model.generate(idx, 10, temperature=1.0, top_k=None, seed=8)
    assert a.shape == (1, 11)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.max().item() < GPT2_VOCAB_SIZE


def reforward_greedy(model: GPT, idx: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """nanoGPT's generation loop without a cache, greedy: the whole (cropped) context every token."""
    for _ in range(new_tokens):
        logits, _ = model(idx[:, -model.config.block_size :])
        idx = torch.cat([idx, logits[:, -1, :].argmax(-1, keepdim=True)], dim=1)
    return idx


@pytest.mark.parametrize(
    "prompt_len, new_tokens",
    [(3, 20), (28, 12), (40, 5)],
    ids=["short", "crosses-block-size", "prompt-longer-than-block"],
)
def test_greedy_generate_equals_the_reforward_loop(prompt_len, new_tokens):
    model = tiny_model(1)
    idx = torch.randint(0, GPT2_VOCAB_SIZE, (2, prompt_len), generator=torch.Generator().manual_seed(prompt_len))
    out = model.generate(idx, new_tokens, top_k=1)
    assert out.shape == (2, prompt_len + new_tokens)
    assert torch.equal(out, reforward_greedy(model, idx, new_tokens))


def test_forward_cached_in_pieces_equals_one_pass():
    model = tiny_model(2).eval()
    idx = torch.randint(0, GPT2_VOCAB_SIZE, (2, 9))
    full, cache = model.forward_cached(idx)
    first, past = model.forward_cached(idx[:, :4])
    second, present = model.forward_cached(idx[:, 4:], past)
    assert full.shape == (2, 9, TINY.vocab_size) and len(present) == TINY.n_layer
    assert present[0][0].shape == (2, TINY.n_head, 9, TINY.n_embd // TINY.n_head)
    torch.testing.assert_close(torch.cat([first, second], dim=1), full)
    for (k, v), (k_full, v_full) in zip(present, cache):
        torch.testing.assert_close(k, k_full)
        torch.testing.assert_close(v, v_full)
    # the last position's logits are what the training forward gives for inference
    torch.testing.assert_close(full[:, -1:], model(idx)[0])


def test_forward_cached_past_block_size_is_a_clear_error():
    model = tiny_model(0)
    _, past = model.forward_cached(torch.zeros((1, TINY.block_size - 1), dtype=torch.long))
    with pytest.raises(ValueError, match="pass block_size"):
        model.forward_cached(torch.zeros((1, 2), dtype=torch.long), past)


def test_generate_stream_yields_the_tokens_of_generate():
    model = tiny_model(3)
    idx = torch.tensor([[5, 6, 7]])
    streamed = list(model.generate_stream(idx, 8, temperature=0.9, top_k=50, seed=11))
    assert [t.shape for t in streamed] == [(1, 1)] * 8
    out = model.generate(idx, 8, temperature=0.9, top_k=50, seed=11)
    assert torch.equal(torch.cat([idx, *streamed], dim=1), out)


def test_top_k_samples_only_among_the_k_likeliest_tokens():
    model = tiny_model(4)
    idx = torch.tensor([[1, 2]])
    for seed in range(5):
        out = model.generate(idx, 6, temperature=2.0, top_k=3, seed=seed)
        for t in range(idx.size(1), out.size(1)):
            logits, _ = model(out[:, :t])
            assert out[0, t].item() in logits[0, -1].topk(3).indices.tolist()
    # a high temperature over all tokens spreads the samples: 6 tokens, several different ones
    assert len(set(model.generate(idx, 6, temperature=5.0, seed=0)[0, 2:].tolist())) > 3


def test_generate_under_autocast_keeps_the_cache_in_the_lower_precision():
    """The notebook samples under autocast: keys come out in bfloat16, and the cache must take them as they are."""
    model = tiny_model(5)
    idx = torch.tensor([[3, 4]])
    past = [KVBuffer(8) for _ in range(TINY.n_layer)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.generate(idx, 6, top_k=1)
        model._hidden(idx, past)
    assert out.shape == (1, 8) and past[0].k.dtype == torch.bfloat16 and past[0].n == 2


def test_generate_restores_training_mode_and_keeps_the_state_dict():
    model = tiny_model(0).train()
    keys = list(model.state_dict())
    model.generate(torch.zeros((1, 1), dtype=torch.long), 3)
    assert model.training and list(model.state_dict()) == keys


def three_adamw_steps(dropout: float, between=lambda model: None) -> tuple[list[str], dict]:
    """Losses (float.hex) of three AdamW steps on one thread, calling between(model) after each; the weights."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = tiny_model(0, dataclasses.replace(TINY, dropout=dropout))
        opt = model.configure_optimizer(0.1, 1e-3, (0.9, 0.95), fused=False)
        g = torch.Generator().manual_seed(1234)
        losses = []
        for _ in range(3):
            x = torch.randint(0, TINY.vocab_size, (2, 32), generator=g)
            y = torch.randint(0, TINY.vocab_size, (2, 32), generator=g)
            _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item().hex())
            between(model)
    finally:
        torch.set_num_threads(threads)
    return losses, model.state_dict()


def generate_a_little(model: GPT) -> None:
    """What the notebook does between training steps at a new best: sample a line (seeded, through the cache)."""
    model.generate(torch.tensor([[1, 2, 3]]), 5, temperature=0.8, top_k=20, seed=7)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_generation_between_steps_leaves_training_bit_for_bit(dropout):
    """Sampling (its own generator) and the KV cache touch neither the weights nor training's random numbers.

    With dropout the masks come from torch's global generator: a sample that drew from it would
    change every later loss. (Bit-for-bit within one process and thread count: other CPUs round
    differently, so no stored numbers are compared.)
    """
    plain_losses, plain_weights = three_adamw_steps(dropout)
    losses, weights = three_adamw_steps(dropout, between=generate_a_little)
    assert losses == plain_losses
    assert all(torch.equal(weights[k], plain_weights[k]) for k in plain_weights)
    assert len(set(losses)) == 3  # three different steps, not one number thrice


def test_too_long_sequence_is_a_clear_error():
    with pytest.raises(ValueError, match="longer than block_size"):
        GPT(TINY)(torch.zeros((1, TINY.block_size + 1), dtype=torch.long))
