#!/usr/bin/env bash
# Install ollama-dist with its test dependencies, then run the whole test suite
# (including the tests on the real local model), the lint (ruff) and the strict type check.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
scripts/setup.sh test
"$PY" -m pytest -q "$@"
"$PY" -m ruff check ollama_dist tests bench
"$PY" -m mypy --strict ollama_dist
