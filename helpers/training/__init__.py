"""Training utilities the notebook's loop calls: the run's state, early stopping, hardware, processes, randomness."""
