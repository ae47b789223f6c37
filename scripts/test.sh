#!/usr/bin/env bash
# Run the whole test suite, the notebook under nbval included. Arguments go to pytest.
# Two worker processes (pytest-xdist), one per core: most tests wait on a notebook run in a
# fresh interpreter, so two at a time finish in about two thirds of the time. A file's tests stay
# on one worker (nbval runs a notebook's cells in order). PYTEST_WORKERS=0 runs in one process
# (e.g. to see a test's prints with -s).
source "$(dirname "$0")/env.sh" requirements-dev.txt
exec python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
