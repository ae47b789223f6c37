"""The entry point of `python -m helpers.prepare`; the program is helpers/commands/prepare.py."""

import sys

from helpers.commands.prepare import main

if __name__ == "__main__":
    sys.exit(main())
