"""`python -m helpers.bench generate`: this project's GPT-2 and transformers' on the same weights, at batch 1.

Both decode greedily (top_k=1; do_sample=False) from the same prompt, and the runs alternate (this
project, transformers, this project, ...) so that a busy machine slows both alike. For each
length: tokens/s (the median run, the prompt's forward pass included), the time to the first new
token, the memory the generation added at its peak (resident memory on a CPU, allocated memory on
CUDA) and whether the two produced the same tokens.

A second table prices the sampling controls of docs/sampling.md: this project's model sampling with
them off (temperature 0.8, top-k 200: the defaults) and on (plus top-p 0.9 and a repetition penalty
of 1.3; and top-p over the whole vocabulary, top-k off), alternating, and the draw alone per token.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from helpers.checkpoints.storage import load_model
from helpers.hf.convert import hf_config, to_hf_state_dict
from helpers.model import GPT, GPTConfig, next_token, penalize_repeats

OURS, THEIRS = "this project", "transformers"


def hf_twin(model: GPT) -> torch.nn.Module:
    """transformers' GPT2LMHeadModel with model's weights, which generates until told to stop."""
    import transformers

    transformers.logging.set_verbosity_error()  # no notes about pad tokens and generation flags
    config = {k: v for k, v in hf_config(model.config).items() if k not in ("architectures", "torch_dtype")}
    twin = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config))
    twin.load_state_dict(to_hf_state_dict(model), strict=False)  # lm_head.weight: tied to wte
    twin.tie_weights()
    twin.generation_config.eos_token_id = None  # never stop early: the same number of tokens as ours
    return twin.to(device=model.lm_head.weight.device, dtype=model.lm_head.weight.dtype).eval()


class PeakMemory:
    """The memory a block of code added at its peak: resident memory (Linux) on a CPU, allocated memory on CUDA."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak, to the current RSS
            self.start = self._proc("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self.start
        else:
            self.bytes = self._proc("VmHWM") - self.start

    @staticmethod
    def _proc(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"/proc/self/status has no {field}")


class FirstTokenClock:
    """A transformers streamer that notes when the first new token arrives (its first put is the prompt)."""

    def __init__(self):
        self.puts, self.first = 0, None

    def put(self, value: torch.Tensor) -> None:
        self.puts += 1
        if self.puts == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def sync(device: str) -> None:
    """Wait for the GPU's queued work, so that the clock measures it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_ours(model: GPT, prompt: torch.Tensor, tokens: int) -> dict:
    """One greedy generation by this project's model, timed."""
    device = str(prompt.device)
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        stream = model.generate_stream(prompt, tokens, top_k=1)
        out = [next(stream)]
        sync(device)
        first = time.perf_counter()
        out += list(stream)
        sync(device)
        seconds = time.perf_counter() - start
    return dict(tokens=torch.cat(out, dim=1)[0].tolist(), seconds=seconds, first=first - start, memory=memory.bytes)


def run_theirs(twin: torch.nn.Module, prompt: torch.Tensor, tokens: int) -> dict:
    """One greedy generation by transformers' model, timed."""
    device = str(prompt.device)
    clock = FirstTokenClock()
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        out = twin.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=tokens,
            do_sample=False,
            pad_token_id=0,
            streamer=clock,
        )
        sync(device)
        seconds = time.perf_counter() - start
    return dict(
        tokens=out[0, prompt.size(1) :].tolist(), seconds=seconds, first=clock.first - start, memory=memory.bytes
    )


def agreement(ours: list[int], theirs: list[int]) -> str:
    """Whether two token lists are the same, or where they part."""
    if ours == theirs:
        return f"same ({len(set(ours))} distinct)"
    return f"differ from token {next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)}"


def bench_generate(model: GPT, lengths: list[int], prompt_tokens: int, repeats: int) -> list[dict]:
    """For each length, the median of repeats alternating runs of each model; one row per model and length."""
    twin = hf_twin(model)
    device = model.lm_head.weight.device
    prompt = torch.randint(0, model.config.vocab_size, (1, prompt_tokens), generator=torch.Generator().manual_seed(0))
    prompt = prompt.to(device)
    run_ours(model, prompt, 2), run_theirs(twin, prompt, 2)  # warm up: first calls allocate and pick kernels
    rows = []
    for n in lengths:
        runs = {OURS: [], THEIRS: []}
        for _ in range(repeats):
            runs[OURS].append(run_ours(model, prompt, n))
            runs[THEIRS].append(run_theirs(twin, prompt, n))
        same = agreement(runs[OURS][0]["tokens"], runs[THEIRS][0]["tokens"])
        for name, results in runs.items():
            median = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]
            rows.append(
                dict(
                    model=name,
                    tokens=n,
                    seconds=median["seconds"],
                    tokens_per_s=n / median["seconds"],
                    first=statistics.median(r["first"] for r in results),
                    memory=max(r["memory"] for r in results),
                    agree=same,
                )
            )
    return rows


def generate_report(rows: list[dict], title: str) -> str:
    """bench_generate's rows as a table, each length with our speed over theirs."""
    lines = [
        title,
        f"{'new tokens':>10}  {'model':<12}  {'tokens/s':>8}  {'time':>7}  {'first token':>11}  "
        f"{'peak memory added':>17}  greedy tokens",
    ]
    for ours, theirs in zip(rows[::2], rows[1::2]):
        for r in (ours, theirs):
            lines.append(
                f"{r['tokens']:>10}  {r['model']:<12}  {r['tokens_per_s']:>8.1f}  {r['seconds']:>6.2f}s  "
                f"{1000 * r['first']:>9.0f}ms  {r['memory'] / 1e6:>14.0f} MB  {r['agree']}"
            )
        lines.append(f"{'':>10}  {'speed-up':<12}  {ours['tokens_per_s'] / theirs['tokens_per_s']:>7.2f}x")
    return "\n".join(lines)


# The sampling controls priced by bench_controls: the defaults, then the defaults with the others on.
CONTROLS = {
    "off": dict(temperature=0.8, top_k=200),
    "on": dict(temperature=0.8, top_k=200, top_p=0.9, repetition_penalty=1.3),
    "on, top-k off": dict(temperature=0.8, top_k=None, top_p=0.9, repetition_penalty=1.3),
}


def run_sampled(model: GPT, prompt: torch.Tensor, tokens: int, controls: dict) -> float:
    """Seconds for one seeded generation of tokens with these controls."""
    start = time.perf_counter()
    for _ in model.generate_stream(prompt, tokens, seed=0, **controls):
        pass
    sync(str(prompt.device))
    return time.perf_counter() - start


def draw_seconds(vocab_size: int, device: str, controls: dict, prompt_tokens: int, repeats: int = 200) -> float:
    """Seconds per token of generate_stream's sampling step alone (penalty, warpers, draw) on random logits."""
    generator = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(1, vocab_size, device=device, generator=generator)
    history = torch.arange(prompt_tokens, device=device)[None]
    penalty = controls.get("repetition_penalty")
    warpers = {k: v for k, v in controls.items() if k != "repetition_penalty"}
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        scores = penalize_repeats(logits, history, penalty) if penalty else logits
        history = torch.cat((history, next_token(scores, generator=generator, **warpers)), dim=1)
    sync(device)
    return (time.perf_counter() - start) / repeats


def bench_controls(model: GPT, lengths: list[int], prompt_tokens: int, repeats: int, draws: int = 200) -> list[dict]:
    """For each length and each of CONTROLS, the median seconds of repeats runs (the controls alternating); then
    the mean of draws sampling steps alone (tokens None)."""
    device = model.lm_head.weight.device
    prompt = torch.randint(0, model.config.vocab_size, (1, prompt_tokens), generator=torch.Generator().manual_seed(0))
    prompt = prompt.to(device)
    for controls in CONTROLS.values():
        run_sampled(model, prompt, 2, controls)  # warm up
    rows = []
    for n in lengths:
        runs = {name: [] for name in CONTROLS}
        for _ in range(repeats):
            for name, controls in CONTROLS.items():
                runs[name].append(run_sampled(model, prompt, n, controls))
        for name, seconds in runs.items():
            rows.append(dict(tokens=n, controls=name, seconds=statistics.median(seconds)))
    for name, controls in CONTROLS.items():
        rows.append(
            dict(
                tokens=None,
                controls=name,
                seconds=draw_seconds(model.config.vocab_size, str(device), controls, prompt_tokens, draws),
            )
        )
    return rows


def controls_report(rows: list[dict], title: str) -> str:
    """bench_controls' rows as a table: ms per token off and on, and on over off."""
    off = {r["tokens"]: r["seconds"] for r in rows if r["controls"] == "off"}
    lines = [title, f"{'new tokens':>10}  {'controls':<14}  {'ms/token':>9}  {'vs off':>7}"]
    for r in rows:
        n = r["tokens"]
        per_token = r["seconds"] / (n or 1)
        lines.append(
            f"{n if n else 'draw alone':>10}  {r['controls']:<14}  {1000 * per_token:>9.3f}  "
            f"{r['seconds'] / off[n]:>6.3f}x"
        )
    return "\n".join(lines)


def generate_model(checkpoint: Path | None, device: str, dtype: str) -> tuple[GPT, str]:
    """The model to measure, and what it is: the checkpoint's, or GPT-2 124M with random weights."""
    if checkpoint is None:
        torch.manual_seed(0)
        model, what = GPT(GPTConfig()).eval(), "GPT-2 124M, random weights"
    else:
        model, _ = load_model(checkpoint)
        what = f"{checkpoint}"
    what += f" ({model.num_params() / 1e6:.1f}M parameters)"
    return model.to(device=device, dtype=getattr(torch, dtype)), what
