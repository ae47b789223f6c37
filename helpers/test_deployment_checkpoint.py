"""`python -m helpers.test_deployment_checkpoint`; the program is helpers/commands/test_deployment_checkpoint.py."""

import sys

from helpers.commands.test_deployment_checkpoint import main

if __name__ == "__main__":
    sys.exit(main())
