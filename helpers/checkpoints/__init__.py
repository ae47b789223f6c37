"""Checkpoints: what a file holds (format), which file when (policy), and writing them safely.

format.py (kinds, keys, reading, checking, stripping), policy.py (periodic, best, final, resume),
writer.py (background saves), fileio.py (atomic files, Drive), safetensors_io.py (the encoding),
deployment.py (the strip tool), lock.py (one run per folder), runs.py (each run's folder).
The policy in words: docs/checkpoints.md.
"""
