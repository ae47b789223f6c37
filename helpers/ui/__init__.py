"""What the notebook shows: tables and the loss chart (display.py), the Generate panel (playground.py),
Colab's Drive and downloads (colab.py)."""
