#!/usr/bin/env bash
# On a machine with a CUDA GPU (e.g. a Colab GPU runtime), from anywhere:
#     bash scripts/gpu_check.sh
# Prints tokens/s, MFU and peak GPU memory of a t4-like setup (float16 + GradScaler, eager,
# 8 x 1024), of the same with deterministic=True (and what that costs), and of the a100 preset
# (bf16 + torch.compile, Ampere and newer), then stops a deterministic run half-way, resumes it,
# and compares it bit for bit with one run straight through. A few minutes at most; exit status 0 only if everything ran and the
# resumed state matched. Uses the python (and the CUDA build of torch) already installed: not
# scripts/env.sh, which would install a CPU build into .venv. Extra arguments go to the bench,
# e.g. --steps 20.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m helpers.bench gpu-check "$@"
