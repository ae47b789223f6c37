#!/usr/bin/env bash
# Train the small CPU model end to end: the notebook's .py as a plain script, preset "cpu".
# Writes checkpoints/cpu-7m/model_final.pt (cpu-7m: the cpu preset's run folder) and prints sampled
# text. Extra GPT2_* settings pass through.
source "$(dirname "$0")/env.sh" requirements.txt
export GPT2_PRESET="${GPT2_PRESET:-cpu}"
exec python notebooks/train_gpt2_124m_colab.py
