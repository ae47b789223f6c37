"""A stand-in for Colab's google.colab (drive, files, userdata) for tests/test_colab.py.

It follows the real modules' signatures and failures, driven by environment variables:
FAKE_COLAB_LOG (a file: one JSON event per line), FAKE_DRIVE (the folder standing in for the
user's Google Drive; mounting links the mount point to it), FAKE_DRIVE_MODE ("ok", "refuse":
the user declines, "timeout": nobody clicks), FAKE_SECRETS (JSON: name -> [value, access granted]).
"""

import json
import os


def _log(*event):
    with open(os.environ["FAKE_COLAB_LOG"], "a") as f:
        f.write(json.dumps(event) + "\n")


from . import drive, files, userdata  # noqa: E402, F401  (they import _log from here)
