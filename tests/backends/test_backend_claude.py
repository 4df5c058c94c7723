"""The Claude backend: the real `anthropic` SDK against the fake API over a real socket."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jsonschema
import pytest

from ollama_dist.backends.base import Backend, Message, Request
from ollama_dist.backends.claude import ClaudeBackend, accepts_sampling, sdk_client
from ollama_dist.errors import (
    AuthError,
    BackendError,
    BadRequest,
    BadResponse,
    ModelMissing,
    Overloaded,
    RateLimited,
    Timeout,
    Unreachable,
)
from tests.servers.anthropic import AnthropicServer

KEY = "test-SECRET-key-0123456789"  # a made-up key; it must never show up anywhere
MODEL = "claude-haiku-5-5"
OLD_MODEL = "claude-haiku-4-5"


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer(key=KEY) as fake:
        yield fake


@pytest.fixture
async def backend(server: AnthropicServer) -> AsyncIterator[ClaudeBackend]:
    claude = ClaudeBackend(api_key=KEY, base_url=server.url)
    yield claude
    await claude.aclose()


def ask(text: str = "What is 2 + 2?", model: str = MODEL, **fields: Any) -> Request:
    return Request(model=model, messages=(Message(role="user", content=text),), **fields)


def bodies(server: AnthropicServer) -> list[dict[str, Any]]:
    return [r.body for r in server.calls("/v1/messages")]


async def test_plain_answer(server: AnthropicServer, backend: ClaudeBackend) -> None:
    server.answer(MODEL, ["four"])
    done = await backend.complete(ask())
    assert (done.text, done.model, done.backend, done.lane) == ("four", MODEL, "claude", "cloud")
    assert done.stop_reason == "end_turn"
    assert done.host == "127.0.0.1"
    assert done.input_tokens == await backend.count_tokens(ask()) > 0
    assert done.output_tokens > 0
    assert (done.cache_creation_tokens, done.cache_read_tokens) == (0, 0)
    assert done.warnings == ()


def test_backend_satisfies_the_protocol() -> None:
    claude: Backend = ClaudeBackend(api_key=KEY)
    assert (claude.name, claude.lane) == ("claude", "cloud")


async def test_thinking_block_first_and_text_still_read(server: AnthropicServer, backend: ClaudeBackend) -> None:
    server.answer(MODEL, ["the text block"])
    done = await backend.complete(ask())
    assert done.text == "the text block"  # not the thinking block the 5.x answer starts with


async def test_bearer_header_received_and_key_never_recorded(server: AnthropicServer, backend: ClaudeBackend) -> None:
    await backend.complete(ask())
    (call,) = server.calls("/v1/messages")
    assert call.auth == "bearer"
    assert call.headers["anthropic-version"]
    assert KEY not in repr(server.requests)
    assert KEY not in repr(backend)


async def test_no_sampling_params_to_5x_models(server: AnthropicServer, backend: ClaudeBackend) -> None:
    await backend.complete(ask(temperature=0.7))
    (body,) = bodies(server)
    assert not {"temperature", "top_p", "top_k", "thinking"} & body.keys()


async def test_installed_sdk_without_temperature_never_sends_it(
    server: AnthropicServer, backend: ClaudeBackend
) -> None:
    await backend.complete(ask(model=OLD_MODEL, temperature=0.7))
    (body,) = bodies(server)
    assert "temperature" not in body


async def test_temperature_only_to_older_models_when_the_sdk_takes_it(server: AnthropicServer) -> None:
    def factory(**options: Any) -> Any:
        client = sdk_client(**options)
        original = client.messages.create

        async def create(*, temperature: float | None = None, **params: Any) -> Any:
            extra = params.pop("extra_body", None) or {}
            if temperature is not None:
                extra["temperature"] = temperature
            return await original(extra_body=extra or None, **params)

        client.messages.create = create  # type: ignore[method-assign]
        return client

    claude = ClaudeBackend(api_key=KEY, base_url=server.url, client_factory=factory)
    await claude.complete(ask(model=OLD_MODEL, temperature=0.7))
    await claude.complete(ask(model=MODEL, temperature=0.7))
    await claude.aclose()
    old, new = bodies(server)
    assert old["temperature"] == 0.7
    assert "temperature" not in new


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("claude-haiku-4-5", True),
        ("claude-haiku-4-5-20251001", True),
        ("claude-opus-4-8", True),
        ("claude-3-7-sonnet-20250219", True),
        ("claude-sonnet-5", False),
        ("claude-sonnet-5-5", False),
        ("claude-haiku-5-5", False),
        ("claude-opus-5-5-20261001", False),
        ("claude-fable-5-2", False),
        ("claude-opus-6", False),
        ("claude-mythos-preview", False),
        ("llama3.2", False),
    ],
    ids=lambda value: str(value),
)
def test_accepts_sampling(model_id: str, expected: bool) -> None:
    assert accepts_sampling(model_id) is expected


SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["bug", "feature"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["label", "score", "tags"],
}


async def test_structured_output_schema_sent_and_answer_parsed(
    server: AnthropicServer, backend: ClaudeBackend
) -> None:
    done = await backend.complete(ask(schema=SCHEMA, effort="low"))
    (body,) = bodies(server)
    sent = body["output_config"]["format"]
    assert sent["type"] == "json_schema"
    assert sent["schema"]["additionalProperties"] is False
    assert sent["schema"]["required"] == ["label", "score", "tags"]
    assert body["output_config"]["effort"] == "low"
    assert "additionalProperties" not in SCHEMA  # the task's schema is not changed
    jsonschema.validate(json.loads(done.text), SCHEMA)


async def test_scripted_structured_answer_is_returned_as_given(
    server: AnthropicServer, backend: ClaudeBackend
) -> None:
    server.answer(MODEL, ['{"label": "bug", "score": 4, "tags": ["ui"]}'])
    done = await backend.complete(ask(schema=SCHEMA))
    assert json.loads(done.text) == {"label": "bug", "score": 4, "tags": ["ui"]}


async def test_unknown_effort_is_refused_before_any_call(server: AnthropicServer, backend: ClaudeBackend) -> None:
    with pytest.raises(BadRequest, match="effort"):
        await backend.complete(ask(effort="extreme"))
    assert server.requests == []


async def test_system_text_goes_to_the_top_level(server: AnthropicServer, backend: ClaudeBackend) -> None:
    request = Request(
        model=MODEL,
        system="Be brief.",
        messages=(Message(role="system", content="Answer in French."), Message(role="user", content="Hi")),
    )
    await backend.complete(request)
    (body,) = bodies(server)
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": "Hi"}]


async def test_max_tokens_caps_the_answer(server: AnthropicServer, backend: ClaudeBackend) -> None:
    server.answer(MODEL, ["a long answer " * 20])
    done = await backend.complete(ask(max_tokens=16))
    assert done.stop_reason == "max_tokens"
    assert done.output_tokens <= 16
    assert len(done.text) < len("a long answer " * 20)
    assert any("max_tokens" in w for w in done.warnings)


async def test_401_is_an_auth_error_with_a_hint(server: AnthropicServer) -> None:
    claude = ClaudeBackend(api_key="sk-ant-wrong-key", base_url=server.url)
    with pytest.raises(AuthError) as caught:
        await claude.complete(ask())
    await claude.aclose()
    assert caught.value.hint is not None and "ANTHROPIC_API_KEY" in caught.value.hint
    assert "401" in str(caught.value)
    assert "sk-ant-wrong-key" not in str(caught.value)
    assert len(server.calls("/v1/messages")) == 1  # a 401 is not retried


async def test_missing_key_fails_before_any_call(server: AnthropicServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    claude = ClaudeBackend(base_url=server.url)
    with pytest.raises(AuthError, match="ANTHROPIC_API_KEY"):
        await claude.complete(ask())
    assert server.requests == []


async def test_key_read_from_the_environment(server: AnthropicServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    claude = ClaudeBackend()
    server.answer(MODEL, ["from env"])
    assert (await claude.complete(ask())).text == "from env"
    await claude.aclose()


async def test_429_with_retry_after_is_retried_by_the_sdk(server: AnthropicServer, backend: ClaudeBackend) -> None:
    server.fail_next(429, retry_after=0.1)
    server.answer(MODEL, ["after the wait"])
    done = await backend.complete(ask())
    assert done.text == "after the wait"
    calls = server.calls("/v1/messages")
    assert [c.headers["x-stainless-retry-count"] for c in calls] == ["0", "1"]


async def test_429_beyond_the_retries_is_rate_limited(server: AnthropicServer, backend: ClaudeBackend) -> None:
    server.fail_next(429, times=3, retry_after=0.1)
    with pytest.raises(RateLimited) as caught:
        await backend.complete(ask())
    assert caught.value.retry_after == pytest.approx(0.1)
    assert "rate_limit_error" in str(caught.value)
    assert len(server.calls("/v1/messages")) == 3  # max_retries=2: three attempts


async def test_529_is_retried_then_overloaded(server: AnthropicServer) -> None:
    claude = ClaudeBackend(api_key=KEY, base_url=server.url, max_retries=1)
    server.fail_next(529, times=2, retry_after=0.05)
    with pytest.raises(Overloaded, match="overloaded_error"):
        await claude.complete(ask())
    await claude.aclose()
    assert len(server.calls("/v1/messages")) == 2


async def test_stall_with_a_short_timeout_is_a_timeout(server: AnthropicServer) -> None:
    claude = ClaudeBackend(api_key=KEY, base_url=server.url, max_retries=0)
    server.stall_next()  # until the server closes
    with pytest.raises(Timeout):
        await claude.complete(ask(timeout_s=0.3))
    await claude.aclose()


async def test_connection_refused_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    claude = ClaudeBackend(api_key=KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0)
    with pytest.raises(Unreachable) as caught:
        await claude.complete(ask())
    await claude.aclose()
    assert str(port) in str(caught.value)
    assert KEY not in str(caught.value)


async def test_unknown_model_is_model_missing(backend: ClaudeBackend) -> None:
    with pytest.raises(ModelMissing, match="claude-nonesuch-9"):
        await backend.complete(ask(model="claude-nonesuch-9"))


async def test_bad_request_carries_the_api_message(server: AnthropicServer, backend: ClaudeBackend) -> None:
    server.fail_next(400, message="messages.0.content: too long for this model")
    with pytest.raises(BadRequest, match="too long for this model"):
        await backend.complete(ask())


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthError), (403, AuthError), (400, BadRequest), (404, ModelMissing), (429, RateLimited),
     (500, BadResponse), (529, Overloaded), (402, BadResponse)],
    ids=lambda value: str(getattr(value, "__name__", value)),
)
async def test_errors_are_translated_and_never_show_the_key(
    server: AnthropicServer, status: int, error: type[BackendError]
) -> None:
    claude = ClaudeBackend(api_key=KEY, base_url=server.url, max_retries=0)
    server.fail_next(status, retry_after=0.01)
    with pytest.raises(BackendError) as caught:
        await claude.complete(ask())
    await claude.aclose()
    assert type(caught.value) is error
    assert caught.value.__cause__ is not None  # translated where it entered, `from exc`
    for text in (str(caught.value), repr(caught.value), repr(caught.value.__cause__), repr(claude)):
        assert KEY not in text


@pytest.mark.parametrize("echo", [KEY[:12], KEY[:20] + "...", f"{KEY[:14]}...{KEY[-4:]}"],
                         ids=["12-chars", "20-chars", "head-and-tail"])
async def test_an_echoed_prefix_of_the_key_is_scrubbed_too(server: AnthropicServer, echo: str) -> None:
    claude = ClaudeBackend(api_key=KEY, base_url=server.url, max_retries=0)
    server.fail_next(401, message=f"invalid x-api-key: {echo} (check the key)")
    with pytest.raises(AuthError) as caught:
        await claude.complete(ask())
    await claude.aclose()
    text = str(caught.value)
    assert KEY[:12] not in text and "***" in text and "check the key" in text


def test_scrub_keeps_text_that_only_shares_a_short_prefix() -> None:
    from ollama_dist.backends.claude import scrub

    assert scrub(f"a {KEY[:11]} b", KEY) == f"a {KEY[:11]} b"  # under 12 characters: not the key
    assert scrub(f"a {KEY} b {KEY[:15]}", KEY) == "a *** b ***"
    assert scrub("a abc b", "abc") == "a *** b"  # a short key is scrubbed where it stands whole
