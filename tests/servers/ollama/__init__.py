"""The fake Ollama server (see :mod:`tests.servers.ollama.server`), re-exported by its old name."""

from tests.servers.ollama.server import (
    BUSY_MESSAGE,
    FakeOllama,
    ModelSpec,
    chatty,
    estimate_tokens,
    fenced,
    refused_url,
)

__all__ = ["BUSY_MESSAGE", "FakeOllama", "ModelSpec", "chatty", "estimate_tokens", "fenced", "refused_url"]
