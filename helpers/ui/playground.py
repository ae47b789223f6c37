"""A small panel to try the trained model: prompt, length, temperature, and a Generate button."""

from __future__ import annotations

from collections.abc import Iterator

import tiktoken
import torch

from helpers.data import get_encoding
from helpers.model import GPT
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
) -> Iterator[str]:
    """The prompt, then the model's continuation piece by piece as it is generated (joined: sample's text)."""
    ids = enc.encode(prompt or "\n")
    shown = text = enc.decode(ids)
    yield shown
    for token in model.generate_stream(
        torch.tensor([ids], device=device), tokens, temperature=temperature, top_k=200, seed=seed
    ):
        ids.append(token.item())
        text = enc.decode(ids)
        # A character of several bytes can span tokens: wait for its last byte (tiktoken shows a
        # part as U+FFFD) rather than print a replacement character that a later token mends.
        if not text.endswith("\ufffd"):
            yield text[len(shown) :]
            shown = text
    if text != shown:
        yield text[len(shown) :]  # the text ends inside a character: show what there is


def sample(
    model: GPT,
    enc: tiktoken.Encoding,
    prompt: str,
    tokens: int,
    temperature: float,
    device: str,
    seed: int | None = None,
) -> str:
    """The prompt continued by the model."""
    return "".join(sample_stream(model, enc, prompt, tokens, temperature, device, seed))


def sample_line(model: GPT, tokens: int, hw: Hardware, seed: int) -> str:
    """A few tokens of the model's text on one line, for the training log at a new best validation loss.

    The seed's own generator draws the tokens, so the run's random numbers (dropout, batches) are
    not touched, and the same draws each time show what the model has learned since the last line.
    """
    with autocast(hw):
        text = sample(model, get_encoding(), "\n", tokens, 0.8, hw.device, seed)
    return "  sample: " + " / ".join(line.strip() for line in text.splitlines() if line.strip())


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
    button = widgets.Button(description="Generate", button_style="primary")
    output = widgets.Output()

    def on_click(_) -> None:
        output.clear_output()
        with output:  # the text appears as it is generated
            for piece in sample_stream(model, enc, prompt.value, length.value, temperature.value, device):
                print(piece, end="", flush=True)
            print()

    button.on_click(on_click)
    panel = widgets.VBox([prompt, length, temperature, button, output])
    display(panel)
    return panel
