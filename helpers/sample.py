"""The entry point of `python -m helpers.sample`; the program is helpers/commands/sample.py."""

import sys

from helpers.commands.sample import main

if __name__ == "__main__":
    sys.exit(main())
