#!/usr/bin/env bash
# Install ollama-dist with its test dependencies, then run the whole test suite
# (including the tests on the real local model), the lint (ruff) and the strict type check.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
scripts/setup.sh test
# The real Claude Code CLI, for the test that runs it against the loopback Anthropic server
# (the test skips with the reason where npm or the registry is missing).
NODE_PREFIX="${OLLAMA_DIST_NODE:-$HOME/.cache/ollama-dist/node}"
if ! command -v claude >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  npm install --silent --no-audit --no-fund --prefix "$NODE_PREFIX" @anthropic-ai/claude-code@2.1.197 >/dev/null 2>&1 \
    || echo "test: could not install the Claude Code CLI; its test will skip" >&2
fi
export PATH="$NODE_PREFIX/node_modules/.bin:$PATH"
"$PY" -m pytest -q "$@"
"$PY" -m ruff check ollama_dist tests bench
"$PY" -m mypy --strict ollama_dist
