import math

import pytest
import torch

from helpers.model import GPT, GPT2_VOCAB_SIZE, GPTConfig

from conftest import TINY


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


def test_generate_top_k_1_is_greedy():
    model = GPT(TINY)
    idx = torch.tensor([[5, 6, 7]])
    out = model.generate(idx, 5, top_k=1, seed=1)
    ctx = idx
    for _ in range(5):
        logits, _ = model(ctx)
        ctx = torch.cat([ctx, logits[:, -1, :].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ctx)


def test_too_long_sequence_is_a_clear_error():
    with pytest.raises(ValueError, match="longer than block_size"):
        GPT(TINY)(torch.zeros((1, TINY.block_size + 1), dtype=torch.long))
