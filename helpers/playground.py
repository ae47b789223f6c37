"""A small panel to try the trained model: prompt, length, temperature, and a Generate button."""

from __future__ import annotations

import tiktoken
import torch

from helpers.display import in_notebook
from helpers.model import GPT


def sample(model: GPT, enc: tiktoken.Encoding, prompt: str, tokens: int, temperature: float, device: str, seed: int | None = None) -> str:
    """The prompt continued by the model."""
    idx = torch.tensor([enc.encode(prompt or "\n")], device=device)
    out = model.generate(idx, tokens, temperature=temperature, top_k=200, seed=seed)
    return enc.decode(out[0].tolist())


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
        with output:
            print(sample(model, enc, prompt.value, length.value, temperature.value, device))

    button.on_click(on_click)
    panel = widgets.VBox([prompt, length, temperature, button, output])
    display(panel)
    return panel
