"""Hugging Face: transformers GPT-2 folders (folders.py, convert.py), the Hub (hub.py), GPT-2's tokenizer
files, and Spaces: Gradio (space.py) or static (static_space.py, onnx_export.py, js_runtime.py), from space_template/.
"""
