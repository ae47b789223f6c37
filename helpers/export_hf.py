"""Export a checkpoint as a Hugging Face transformers GPT-2 folder (and optionally upload it).

    python -m helpers.export_hf checkpoints/model_final.pt hf_model
    python -m helpers.export_hf checkpoints/model_best.pt hf_model --force --push user/gpt2-shakespeare

The checkpoint may be full or deployment, .pt or .safetensors, any precision. The folder holds
config.json, model.safetensors and GPT-2's tokenizer files (from tiktoken's cache), and loads
with `GPT2LMHeadModel.from_pretrained(folder)` or `pipeline("text-generation", model=folder)`.
It is written beside OUT_DIR and renamed into place, so it is never left half written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from helpers.checkpoint import CheckpointError
from helpers.cli import fail, folder_tool_parser
from helpers.hf import check_out_dir, export_hf_folder, upload_to_hub
from helpers.safetensors_io import load_any_model


def export_hf(checkpoint: str | Path, out_dir: str | Path, force: bool = False, dtype: str = "float32") -> Path:
    """Write the checkpoint's model as a transformers GPT-2 folder; refuse a non-empty out_dir unless forced."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    check_out_dir(checkpoint, out_dir, force)  # before the slow load
    model, ckpt = load_any_model(checkpoint)
    info = {k: ckpt[k] for k in ("step", "loss", "val_loss") if isinstance(ckpt.get(k), (int, float))}
    try:
        return export_hf_folder(model, out_dir, force=force, dtype=dtype, info=info)
    except ValueError as e:  # e.g. a model without biases, which transformers' GPT-2 cannot hold
        raise CheckpointError(checkpoint, str(e)) from None


def main(argv: list[str] | None = None) -> int:
    """The command line: parse argv, run, and return the exit status."""
    parser = folder_tool_parser("python -m helpers.export_hf", "Export a checkpoint as a Hugging Face transformers GPT-2 folder.",
                                "then upload the folder to this Hub repository (needs HF_TOKEN)")
    args = parser.parse_args(argv)
    try:
        out_dir = export_hf(args.checkpoint, args.out_dir, args.force, args.dtype)
    except (CheckpointError, OSError) as e:
        return fail(e, args.out_dir)
    print(f"wrote {out_dir}: {', '.join(sorted(p.name for p in out_dir.iterdir()))}")
    if args.push:
        try:
            upload_to_hub(out_dir, args.push)
        except Exception as e:  # network, permissions, a bad repo id: the export itself stands
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"error: {out_dir}: upload to {args.push} failed ({first})", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
