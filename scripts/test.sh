#!/usr/bin/env bash
# Run the whole test suite, the notebook under nbval included. Arguments go to pytest.
source "$(dirname "$0")/env.sh" requirements-dev.txt
exec python -m pytest "$@"
