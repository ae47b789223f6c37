"""A small panel to try the trained model: prompt, length, the sampling controls, and a Generate button."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import tiktoken
import torch

from helpers.data import get_encoding
from helpers.model import GPT
from helpers.sampling import parse_stops, text_stream
from helpers.training.hardware import Hardware, autocast
from helpers.ui.display import in_notebook


def sample_stream(
    model: GPT,
    enc: tiktoken.Encoding,
    prompt: str,
    tokens: int,
    temperature: float,
    device: str,
    seed: int | None = None,
    top_k: int | None = 200,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    stop: Sequence[str] = (),
) -> Iterator[str]:
    """The prompt, then the model's continuation piece by piece as it is generated (joined: sample's text).

    The continuation ends before the first of the stop strings in it (see helpers.sampling.text_stream).
    """
    ids = enc.encode(prompt or "\n")
    stream = model.generate_stream(
        torch.tensor([ids], device=device),
        tokens,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
    )
    yield from text_stream(ids, stream, enc.decode, stop)


def sample(
    model: GPT,
    enc: tiktoken.Encoding,
    prompt: str,
    tokens: int,
    temperature: float,
    device: str,
    seed: int | None = None,
    **controls: object,
) -> str:
    """The prompt continued by the model; controls are sample_stream's (top_k, top_p, repetition_penalty, stop)."""
    return "".join(sample_stream(model, enc, prompt, tokens, temperature, device, seed, **controls))


def sample_line(model: GPT, tokens: int, hw: Hardware, seed: int) -> str:
    """A few tokens of the model's text on one line, for the training log at a new best validation loss.

    The seed's own generator draws the tokens, so the run's random numbers (dropout, batches) are
    not touched, and the same draws each time show what the model has learned since the last line.
    """
    with autocast(hw):
        text = sample(model, get_encoding(), "\n", tokens, 0.8, hw.device, seed)
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())


def generation_panel(model: GPT, enc: tiktoken.Encoding, device: str, seed: int | None = None) -> object | None:
    """Show an ipywidgets panel in a notebook; in a script, print one sample. Returns the panel."""
    if not in_notebook():
        print(sample(model, enc, "JULIET:", 100, 0.8, device, seed))  # the sample cell had ROMEO
        return None
    import ipywidgets as widgets
    from IPython.display import display

    prompt = widgets.Textarea(value="ROMEO:", description="Prompt")
    length = widgets.IntSlider(value=100, min=10, max=500, step=10, description="Tokens")
    temperature = widgets.FloatSlider(value=0.8, min=0.1, max=1.5, step=0.05, description="Temperature")
    # The other controls of docs/sampling.md, each off at its end of the range but top-k (200, as sample's).
    top_k = widgets.IntSlider(value=200, min=0, max=500, step=1, description="Top-k (0: all)")
    top_p = widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="Top-p (1: off)")
    penalty = widgets.FloatSlider(value=1.0, min=1.0, max=2.0, step=0.05, description="Repetition penalty")
    stop = widgets.Textarea(value="", placeholder="one per line, \\n for a newline", description="Stop at")
    button = widgets.Button(description="Generate", button_style="primary")
    output = widgets.Output()

    def on_click(_) -> None:
        output.clear_output()
        with output:  # the text appears as it is generated
            pieces = sample_stream(
                model,
                enc,
                prompt.value,
                length.value,
                temperature.value,
                device,
                top_k=top_k.value,
                top_p=top_p.value,
                repetition_penalty=penalty.value,
                stop=parse_stops(stop.value),
            )
            for piece in pieces:
                print(piece, end="", flush=True)
            print()

    button.on_click(on_click)
    panel = widgets.VBox([prompt, length, temperature, top_k, top_p, penalty, stop, button, output])
    display(panel)
    return panel
