"""GPT-2 in one file, after nanoGPT's model.py.

`GPT(GPTConfig())` is GPT-2 124M: 12 layers, 12 heads, width 768, a context of 1024 tokens and
GPT-2's vocabulary of 50,257 tokens. The vocabulary is not padded (nanoGPT pads it to 50,304 for a
few per cent of GPU speed) so that checkpoints keep the shapes of OpenAI's GPT-2 and of the
user's existing deployment code, whose `GPT(GPTConfig())` has a 50,257 x 768 token embedding.
The output head shares the token embedding's weights.

Generation keeps a KV cache: each layer's keys and values for the tokens so far, so that a new
token costs one position's work instead of the whole context's (nanoGPT's loop re-runs it all).
`forward_cached` is the cache as a pure function (tensors in, tensors out, for ONNX export);
`generate` and `generate_stream` keep it in preallocated buffers (KVBuffer).

Sampling follows transformers' logits processors, in their order: a repetition penalty, then
temperature, top-k and top-p (penalize_repeats, warp, next_token; docs/sampling.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
from torch.nn import functional as F

GPT2_VOCAB_SIZE = 50257  # tokens in tiktoken's "gpt2" encoding

KV = tuple[torch.Tensor, torch.Tensor]  # one layer's keys and values, each (B, n_head, T, head_size)
KVCache = list[KV]  # one KV per layer: what the model has computed for the tokens so far


@dataclass
class GPTConfig:
    """The model's architecture; the defaults are GPT-2 124M."""

    block_size: int = 1024  # longest context, in tokens
    vocab_size: int = GPT2_VOCAB_SIZE
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as GPT-2 has them

    def to_dict(self) -> dict:
        """The config as a plain dict (what checkpoints store as `model_args`)."""
        return asdict(self)


# The fields two models must share to be the same architecture: all but dropout, which only changes training.
ARCHITECTURE = tuple(f.name for f in fields(GPTConfig) if f.name != "dropout")


class KVBuffer:
    """One layer's keys and values in tensors allocated once, for generate.

    Each new token is written in place, where forward_cached's torch.cat copies the whole cache
    every token (a tenth of a 124M step on a CPU at 100 tokens, more as the text grows). A plain
    object, not a module: nothing of it reaches the state dict.
    """

    def __init__(self, size: int):
        self.size = size  # the most positions it will hold
        self.k = self.v = None  # allocated by the first extend, in its keys' dtype (autocast's, say)
        self.n = 0  # positions filled

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> KV:
        """Write k, v (B, n_head, T, head_size) after the filled positions; all the keys and values so far."""
        if self.k is None:
            B, H, _, D = k.shape
            self.k, self.v = k.new_empty(B, H, self.size, D), v.new_empty(B, H, self.size, D)
        n, T = self.n, k.size(2)
        self.k[:, :, n : n + T] = k
        self.v[:, :, n : n + T] = v
        self.n = n + T
        return self.k[:, :, : self.n], self.v[:, :, : self.n]


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which each position sees only itself and earlier positions."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        # query, key and value projections for all heads in one matrix multiply
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, past: KV | KVBuffer | None = None) -> tuple[torch.Tensor, KV | KVBuffer]:
        """The attention's output for x (B, T, C), and this layer's keys and values (B, n_head, T_past + T, head_size).

        past holds the keys and values of T_past earlier positions (the KV cache): x's T tokens
        then attend to those and to each other, so a new token costs one position's work. A
        KVBuffer past is filled in place and returned.
        """
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # (B, T, C) -> (B, n_head, T, head_size)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        dropout_p = self.dropout if self.training else 0.0
        if past is None:
            # Flash / memory-efficient attention where available; is_causal keeps a mask buffer
            # out of the state dict.
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        elif isinstance(past, KVBuffer):
            # generate's cache, filled by the prompt from empty (plain causal attention), then one
            # token at a time (which sees every key: no mask at all).
            if past.n and T > 1:
                raise ValueError("a KVBuffer takes several tokens only while it is empty")
            causal = past.n == 0
            k, v = past.extend(k, v)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
        else:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
            # is_causal would align the mask to the top left; with a cache, query i sits at
            # position T_past + i and sees keys 0 .. T_past + i. Built from aranges so that it
            # traces (ONNX) for any T and T_past.
            S = k.size(2)
            mask = torch.arange(S, device=x.device) <= torch.arange(S - T, S, device=x.device)[:, None]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y)), past if isinstance(past, KVBuffer) else (k, v)


class MLP(nn.Module):
    """The feed-forward part of a block: widen 4x, GELU, project back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2 used the tanh approximation
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """One transformer block: attention then MLP, each with a pre-LayerNorm and a residual."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, past: KV | KVBuffer | None = None) -> tuple[torch.Tensor, KV | KVBuffer]:
        """The block's output, and its attention's keys and values (see CausalSelfAttention)."""
        a, kv = self.attn(self.ln_1(x), past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), kv


class GPT(nn.Module):
    """GPT-2: token and position embeddings, n_layer blocks, a final LayerNorm, a tied output head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying (GPT-2 does it): one matrix embeds tokens and scores them.
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init: residual projections shrink with depth so that the residual
        # stream's variance does not grow with the number of layers.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Number of parameters, the tied embedding counted once."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits over the vocabulary, and the mean cross-entropy when targets are given."""
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.config.block_size}")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x, _ = block(x)
        x = self.transformer.ln_f(x)
        if targets is None:
            # Inference needs only the last position's logits.
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizer(
        self, weight_decay: float, learning_rate: float, betas: tuple[float, float], fused: bool
    ) -> torch.optim.AdamW:
        """AdamW over all parameters in one group.

        One group, not nanoGPT's two (decay for matrices, none for biases and LayerNorms), so that
        the optimizer state loads into a plain `torch.optim.AdamW(model.parameters())`, as the
        snippet for a full checkpoint in docs/checkpoints.md does. The cost is a slight pull of biases and LayerNorm
        gains towards zero, which over a run this short is negligible.
        """
        return torch.optim.AdamW(
            self.parameters(), lr=learning_rate, betas=betas, weight_decay=weight_decay, fused=fused
        )

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token, nanoGPT's estimate: 6N + 12*L*H*Q*T."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * seq_len

    def forward_cached(self, idx: torch.Tensor, past: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        """Logits (B, T, vocab_size) for idx (B, T) following the cached positions, and the cache grown by T.

        idx's tokens take positions T_past .. T_past + T - 1, where T_past is past's length (0 when
        past is None); they must stay below block_size. A pure function of its tensors, so that
        torch.onnx.export can trace it.
        """
        x, present = self._hidden(idx, past)
        return self.lm_head(x), present

    def _hidden(
        self, idx: torch.Tensor, past: KVCache | list[KVBuffer] | None
    ) -> tuple[torch.Tensor, KVCache | list[KVBuffer]]:
        """The final LayerNorm's output for idx after past's positions, and the grown cache."""
        if past is None:
            T_past = 0
        else:
            T_past = past[0].n if isinstance(past[0], KVBuffer) else past[0][0].size(2)
        T = idx.size(1)
        if T_past + T > self.config.block_size:
            raise ValueError(f"positions up to {T_past + T} pass block_size {self.config.block_size}")
        pos = torch.arange(T_past, T_past + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        present = []
        for i, block in enumerate(self.transformer.h):
            x, kv = block(x, None if past is None else past[i])
            present.append(kv)
        return self.transformer.ln_f(x), present

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float | None = None,
    ) -> torch.Tensor:
        """Append max_new_tokens sampled tokens to idx (B, T); a seed makes it reproducible (see generate_stream)."""
        for idx_next in self.generate_stream(
            idx, max_new_tokens, temperature, top_k, seed, top_p=top_p, repetition_penalty=repetition_penalty
        ):
            idx = torch.cat((idx, idx_next), dim=1)
        return idx

    @torch.no_grad()
    def generate_stream(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield generate's new tokens one at a time, each (B, 1), as soon as it is sampled.

        Each token's logits pass through transformers' processors in transformers' order: the
        repetition penalty over every token of the prompt and of the text so far, then temperature,
        top-k, top-p (next_token). top_k None or 0, top_p None or 1 and repetition_penalty None or
        1 switch each off; top_k=1 is greedy.
        """
        check_sampling(temperature, top_k, top_p, repetition_penalty)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=idx.device).manual_seed(seed)
        was_training = self.training
        self.eval()
        c = self.config
        size = min(c.block_size, idx.size(1) + max_new_tokens)  # the longest context this call needs
        past = [KVBuffer(size) for _ in range(c.n_layer)]
        # The penalty's tokens: every one since the prompt's start, as transformers sees them, even
        # those the sliding context has left behind.
        history = idx if repetition_penalty not in (None, 1.0) else None
        try:
            new = idx  # the tokens that the cache does not hold yet
            for _ in range(max_new_tokens):
                if idx.size(1) > c.block_size:
                    # The context slides: every position moves, so the cache is rebuilt for the
                    # last block_size tokens (as costly as nanoGPT's loop, and with its results).
                    idx = idx[:, -c.block_size :]
                    new = idx
                    for layer in past:
                        layer.n = 0
                x, _ = self._hidden(new, past)
                logits = self.lm_head(x[:, -1, :]).float()
                if history is not None:
                    logits = penalize_repeats(logits, history, repetition_penalty)
                new = next_token(logits, temperature, top_k, top_p, generator)
                if history is not None:
                    history = torch.cat((history, new), dim=1)
                idx = torch.cat((idx, new), dim=1)
                yield new
        finally:
            self.train(was_training)


def check_sampling(
    temperature: float, top_k: int | None, top_p: float | None, repetition_penalty: float | None
) -> None:
    """A ValueError naming the first sampling control out of its range (transformers' ranges)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    if top_k is not None and top_k < 0:
        raise ValueError(f"top_k must be 0 (off) or more, not {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be above 0 and at most 1, not {top_p}")
    if repetition_penalty is not None and not repetition_penalty > 0:
        raise ValueError(f"repetition_penalty must be positive, not {repetition_penalty}")


def penalize_repeats(logits: torch.Tensor, ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' RepetitionPenaltyLogitsProcessor: the logits (B, vocab_size) of the tokens in ids (B, T)
    divided by penalty where positive and multiplied by it where negative, so that above 1 they grow less likely."""
    scores = logits.gather(1, ids)  # the T tokens' alone: no pass over the whole vocabulary
    return logits.scatter(1, ids, torch.where(scores < 0, scores * penalty, scores / penalty))


def nucleus(logits: torch.Tensor, top_p: float, outside: torch.Tensor | None = None) -> torch.Tensor:
    """transformers' TopPLogitsWarper on logits sorted likeliest first: -inf for the unlikeliest tokens whose
    probabilities add up to at most 1 - top_p, the likeliest always kept.

    outside (B, 1): when logits are only the vocabulary's likeliest, the probability of the others, which
    transformers counts first (they are the unlikeliest); logits are then log-probabilities.
    """
    ascending = logits.flip(-1)  # transformers sorts ascending: the same sums in the same order
    probs = ascending.softmax(dim=-1) if outside is None else ascending.exp()
    if probs.is_cuda and torch.are_deterministic_algorithms_enabled():
        # deterministic mode (GPT2_DETERMINISTIC) refuses CUDA's float cumsum, which has no deterministic kernel
        cumulative = probs.cpu().cumsum(dim=-1).to(probs.device)
    else:
        cumulative = probs.cumsum(dim=-1)
    if outside is not None:
        cumulative = outside + cumulative
    remove = cumulative <= 1 - top_p
    remove[..., -1] = False
    return logits.masked_fill(remove.flip(-1), float("-inf"))


NUCLEUS_FIRST = 1024  # top-p without top-k looks at the likeliest this many first, rather than sort them all


def warp(
    logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers' TemperatureLogitsWarper, TopKLogitsWarper and TopPLogitsWarper, in that order: the logits
    to draw from (-inf for those left out), and the token each column stands for (None: the vocabulary in order)."""
    logits = logits / temperature
    indices = None
    if top_k and top_k < logits.size(-1):
        # Draw among the k likeliest tokens alone: the distribution of masking the others to -inf,
        # without a draw over all 50,257 (a millisecond on a CPU). topk sorts them, as top-p needs.
        logits, indices = torch.topk(logits, top_k)
    if top_p is None or top_p >= 1:
        return logits, indices
    if indices is None and logits.size(-1) > NUCLEUS_FIRST:
        # Sorting all 50,257 costs a CPU several milliseconds a token. The tokens past the likeliest
        # NUCLEUS_FIRST are the unlikeliest, counted first, so when they hold at most 1 - top_p they
        # are all left out: the likeliest alone then decide, as log-probabilities.
        first, first_indices = torch.topk(logits.log_softmax(dim=-1), NUCLEUS_FIRST)
        outside = 1 - first.exp().sum(dim=-1, keepdim=True)
        if (outside <= 1 - top_p).all():
            return nucleus(first, top_p, outside), first_indices
    if indices is None:
        logits, indices = torch.sort(logits, descending=True)
    return nucleus(logits, top_p), indices


def next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token (B, 1) drawn from logits (B, vocab_size) after temperature, top-k and top-p (warp)."""
    if top_k == 1:  # greedy: the one token a draw among the likeliest one could give
        return logits.argmax(dim=-1, keepdim=True)
    logits, indices = warp(logits, temperature, top_k, top_p)
    choice = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)
    return choice if indices is None else indices.gather(-1, choice)


def param_count(config: GPTConfig) -> int:
    """Parameters of a GPT of this config, the tied embedding once (built on the meta device: no memory)."""
    with torch.device("meta"):
        return GPT(config).num_params()
