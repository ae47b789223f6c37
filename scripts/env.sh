# Sourced by scripts/train_cpu.sh and scripts/test.sh: make .venv and install into it, then use
# ../shared (the offline copies of tiny Shakespeare and tiktoken's files) when it is there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
# torch 2.13.0, the version the tests run on (this project's CI machines keep a CPU build of it on
# disk; elsewhere pip fetches PyPI's build). Set TORCH_SPEC to choose another, e.g. "torch".
python -c "import torch" 2>/dev/null || pip install -q "${TORCH_SPEC:-torch==2.13.0}"
pip install -q -r "$1"
# ipykernel 6.17 (Colab's, which the tests pin) has its debugger warn about Python 3.11's frozen modules.
export PYDEVD_DISABLE_FILE_VALIDATION=1
SHARED="$(cd "$ROOT/.." && pwd)/shared"
if [ -d "$SHARED" ]; then
    export TIKTOKEN_CACHE_DIR="${TIKTOKEN_CACHE_DIR:-$SHARED/tiktoken_cache}"
    export GPT2_DATA_URL="${GPT2_DATA_URL:-file://$SHARED/data/tinyshakespeare/input.txt}"
fi
