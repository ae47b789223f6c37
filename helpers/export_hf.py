"""The entry point of `python -m helpers.export_hf`; the program is helpers/commands/export_hf.py."""

import sys

from helpers.commands.export_hf import main

if __name__ == "__main__":
    sys.exit(main())
