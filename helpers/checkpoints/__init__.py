"""Checkpoints: one object the notebook uses, and the parts it is made of.

checkpointer.py (the Checkpointer: the run's pieces registered once; take the folder, resume,
keep the best, save, finish), format.py (what a file holds), storage.py (files written and read),
policy.py (which files a run keeps, rotation), resume.py (what a run resumes from, repairs),
writer.py (background writes), lock.py (one run per folder), safetensors_io.py (the encoding),
deployment.py (the strip tool), runs.py (each run's folder). The policy in words: docs/checkpoints.md.
"""
