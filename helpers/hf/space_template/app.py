"""Try GPT-2 trained on tiny Shakespeare: a Gradio page for a Hugging Face Space.

Written by `python -m helpers.make_space`; runs on its own with model.py, sampling.py, the checkpoint
and space.json beside it (`python app.py`, then open http://127.0.0.1:7860). It runs on the CPU,
as a free Space has no GPU.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path

# Offline by default: no usage statistics, and GPT-2's tokenizer files from this folder (tiktoken
# would otherwise download them at start-up). Set before gradio and tiktoken are imported.
HERE = Path(__file__).resolve().parent
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if (HERE / "tiktoken_cache").is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(HERE / "tiktoken_cache"))

try:
    # ZeroGPU's runtime (--hardware zero-gpu): @spaces.GPU lends a GPU to each call. Imported before
    # torch, as its documentation advises. Without it (locally, on cpu-basic) the decorator does nothing.
    import spaces

    gpu = spaces.GPU
except ImportError:

    def gpu(function):
        return function


import gradio as gr  # noqa: E402
import tiktoken  # noqa: E402
import torch  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402  (model.py beside this file)
from sampling import parse_stops, text_stream  # noqa: E402  (the stop strings: sampling.py beside it)

FACTS = json.loads((HERE / "space.json").read_text())
EXAMPLES = ["ROMEO:", "JULIET:\nO Romeo, Romeo!", "First Citizen:\n", "KING RICHARD III:\nNow is the winter"]


def load_checkpoint(path: Path) -> dict:
    """The deployment checkpoint as a dict: `model_args` and `model_state_dict`, as torch.load gives it."""
    if path.suffix != ".safetensors":
        return torch.load(path, map_location="cpu", weights_only=True)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:  # tensors, and the other keys as JSON metadata
        checkpoint = {key: json.loads(value) for key, value in f.metadata().items()}
        state = {key: f.get_tensor(key) for key in f.keys()}
    for alias, source in checkpoint.pop("tied_weights", {}).items():
        state[alias] = state[source]  # stored once: lm_head.weight is the token embedding
    checkpoint["model_state_dict"] = state
    return checkpoint


# A deployment checkpoint loaded as any GPT-2 code of this shape loads it, the architecture taken from the file.
checkpoint = load_checkpoint(HERE / FACTS["checkpoint"])
model = GPT(GPTConfig(**checkpoint["model_args"]))
model.load_state_dict(checkpoint["model_state_dict"])  # half-precision weights are cast to float32
model.eval()
del checkpoint
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # ZeroGPU reports a GPU at start-up and attaches it per call
model.to(DEVICE)
enc = tiktoken.get_encoding("gpt2")


@gpu
def generate(
    prompt: str,
    tokens: float,
    temperature: float,
    top_k: float,
    seed: float | None,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    stop: str = "",
) -> Iterator[str]:
    """The prompt continued by the model, yielded as it grows; one seed gives one text, -1 or empty a new one.

    The controls act in transformers' order (model.py's generate_stream): the repetition penalty, then
    temperature, top-k, top-p; the text ends before the first stop string (one per line, \\n for a newline).
    """
    ids = enc.encode(prompt or "\n", allowed_special={"<|endoftext|>"})
    seed = None if seed is None or seed < 0 else int(seed)
    stream = model.generate_stream(
        torch.tensor([ids], device=DEVICE),
        int(tokens),
        temperature=max(float(temperature), 1e-3),
        top_k=int(top_k) or None,
        seed=seed,
        top_p=min(max(float(top_p), 1e-6), 1.0),
        repetition_penalty=max(float(repetition_penalty), 1e-3),
    )
    text = ""
    for piece in text_stream(ids, stream, enc.decode, parse_stops(stop or "")):
        text += piece
        yield text  # the whole text each time: Gradio replaces the box's content


def facts() -> str:
    """The model's facts, in one line of Markdown under the page."""
    val = f"{FACTS['val_loss']:.3f}" if FACTS.get("val_loss") is not None else "not measured"
    return (
        f"**{FACTS['parameters'] / 1e6:,.1f}M parameters** ({FACTS['n_layer']} layers, width "
        f"{FACTS['n_embd']}, context {FACTS['block_size']} tokens) · trained {FACTS['step']:,} steps · "
        f"validation loss {val} · `{FACTS['checkpoint']}` {FACTS['file_bytes'] / 1e6:,.1f} MB "
        f"({FACTS['dtype']}) · running on the {'GPU (ZeroGPU)' if FACTS.get('hardware') == 'zero-gpu' else 'CPU'}"
    )


# System fonts: the default theme would fetch Google Fonts, which an offline browser cannot.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])

with gr.Blocks(title=FACTS["title"]) as demo:
    gr.Markdown(
        f"# {FACTS['title']}\nGPT-2 trained on tiny Shakespeare. Write the start of a scene; the model continues it."
    )
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="Prompt", value=EXAMPLES[0], lines=4, elem_id="prompt")
            tokens = gr.Slider(10, 500, value=100, step=10, label="Length (tokens)")
            temperature = gr.Slider(0.1, 1.5, value=0.8, step=0.05, label="Temperature")
            top_k = gr.Slider(0, 500, value=200, step=1, label="Top-k (0: all tokens)")
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (1: off)", elem_id="top_p")
            penalty = gr.Slider(1.0, 2.0, value=1.0, step=0.05, label="Repetition penalty (1: off)")
            stop = gr.Textbox("", label="Stop at (one per line, \\n for a newline)", lines=2, elem_id="stop")
            seed = gr.Number(value=1337, precision=0, label="Seed (-1: a new sample each time)")
            button = gr.Button("Generate", variant="primary", elem_id="generate")
        output = gr.Textbox(label="Generated text", lines=16, elem_id="output")
    gr.Examples(EXAMPLES, inputs=prompt)
    gr.Markdown(facts())
    inputs = [prompt, tokens, temperature, top_k, seed, top_p, penalty, stop]  # new ones last: old API calls work
    button.click(generate, inputs, output, api_name="generate")

if __name__ == "__main__":
    demo.queue().launch(theme=THEME)  # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose the address
