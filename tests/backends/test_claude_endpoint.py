"""The cloud base URL is never an Ollama server taken for Anthropic's (Ollama serves /v1/messages too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollama_dist.api import build_lanes
from ollama_dist.backends.base import Message, Request
from ollama_dist.backends.claude import ClaudeBackend
from ollama_dist.backends.claude_endpoint import ollama_lookalike
from ollama_dist.config import load_settings
from ollama_dist.errors import ConfigError, WrongEndpoint
from tests.servers.anthropic import AnthropicServer
from tests.servers.ollama import FakeOllama

KEY = "test-SECRET-key-0123456789"


def ask() -> Request:
    return Request(model="claude-haiku-5-5", messages=(Message(role="user", content="hi"),))


@pytest.mark.parametrize(("url", "locals_", "caught"), [
    ("http://localhost:11434", [], "port 11434"),
    ("http://127.0.0.1:11434/", [], "port 11434"),
    ("http://gpu-box:8080", ["http://gpu-box:8080"], "local server http://gpu-box:8080"),
    ("http://localhost:9000", ["http://127.0.0.1:9000/v1"], "local server"),
    ("https://api.anthropic.com", ["http://127.0.0.1:11434"], None),
    ("https://llm-gateway.example.com", ["http://127.0.0.1:11434"], None),
])
def test_an_ollama_lookalike_is_seen_without_the_network(url: str, locals_: list[str], caught: str | None) -> None:
    why = ollama_lookalike(url, locals_)
    assert (why is None) if caught is None else (why is not None and caught in why)


def test_a_run_refuses_a_cloud_base_url_on_ollamas_port(tmp_path: Path) -> None:
    env = {"OLLAMA_DIST_HOME": str(tmp_path), "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": "http://localhost:11434"}
    with pytest.raises(ConfigError) as caught:
        build_lanes(load_settings(tmp_path, env))
    assert caught.value.field == "cloud.base_url" and "env:ANTHROPIC_BASE_URL" in caught.value.message
    assert "points at Ollama, not Claude" in caught.value.message and "env -u ANTHROPIC_BASE_URL" in str(caught.value)
    assert KEY not in str(caught.value)


async def test_a_base_url_that_answers_as_ollama_is_refused_before_any_message() -> None:
    with FakeOllama() as ollama:  # on a random port: only the /api/version probe can tell
        claude = ClaudeBackend(api_key=KEY, base_url=ollama.url)
        with pytest.raises(WrongEndpoint) as caught:
            await claude.complete(ask())
        await claude.aclose()
    assert f"{ollama.url} answers Ollama's /api/version ({ollama.version})" in caught.value.message
    assert caught.value.exit_code == 2 and not caught.value.escalate
    assert ollama.log == [("GET", "/api/version")]  # no message left, so no key either


async def test_anthropics_api_is_probed_once_and_without_the_key() -> None:
    with AnthropicServer(key=KEY) as server:
        claude = ClaudeBackend(api_key=KEY, base_url=server.url)
        await claude.complete(ask())
        await claude.complete(ask())
        await claude.aclose()
    assert [r.path for r in server.requests] == ["/api/version", "/v1/messages", "/v1/messages"]
    assert server.requests[0].auth is None
