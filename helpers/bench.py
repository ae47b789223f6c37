"""The entry point of `python -m helpers.bench`; the program is helpers/commands/bench.py."""

import sys

from helpers.commands.bench import main

if __name__ == "__main__":
    sys.exit(main())
