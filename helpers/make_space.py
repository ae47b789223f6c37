"""The entry point of `python -m helpers.make_space`; the program is helpers/commands/make_space.py."""

import sys

from helpers.commands.make_space import main

if __name__ == "__main__":
    sys.exit(main())
