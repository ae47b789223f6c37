"""`python -m helpers.create_deployment_checkpoint`; the program is helpers/commands/create_deployment_checkpoint.py."""

import sys

from helpers.commands.create_deployment_checkpoint import main

if __name__ == "__main__":
    sys.exit(main())
