"""The entry point of `python -m helpers.report`; the program is helpers/commands/report.py."""

import sys

from helpers.commands.report import main

if __name__ == "__main__":
    sys.exit(main())
