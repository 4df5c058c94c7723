"""Message Batches through the real SDK against the fake API: results as values."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from ollama_dist.backends.base import Completion, Message, Request
from ollama_dist.backends.claude import ClaudeBackend
from ollama_dist.backends.claude_batch import (
    cancel_batch,
    fetch_results,
    run_batch,
    submit_batch,
    wait_for_batch,
)
from ollama_dist.errors import AuthError, BackendError, BadRequest, ModelMissing, RouteMissing, Timeout
from tests.servers.anthropic import AnthropicServer

KEY = "sk-ant-test-SECRET-batch"
MODEL = "claude-haiku-5-5"


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer(key=KEY, batch_polls=2) as fake:
        yield fake


@pytest.fixture
async def backend(server: AnthropicServer) -> AsyncIterator[ClaudeBackend]:
    claude = ClaudeBackend(api_key=KEY, base_url=server.url)
    yield claude
    await claude.aclose()


class Pauses:
    """An injected sleep: records each pause, never waits."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seen.append(seconds)


def ask(text: str, model: str = MODEL) -> Request:
    return Request(model=model, messages=(Message(role="user", content=text),))


def echo(body: dict[str, Any]) -> str:
    return "echo: " + str(body["messages"][-1]["content"])


async def test_batch_polls_until_ended_and_matches_results_by_custom_id(
    server: AnthropicServer, backend: ClaudeBackend
) -> None:
    server.answer(MODEL, echo)
    pauses = Pauses()
    items = [("first", ask("one")), ("second", ask("two")), ("third", ask("three"))]
    results = await run_batch(backend, items, sleep=pauses, first_poll_s=2.0, max_poll_s=3.0)

    assert pauses.seen == [2.0, 3.0]  # two in_progress answers, backoff capped at max_poll_s
    assert set(results) == {"first", "second", "third"}
    for custom_id, text in (("first", "one"), ("second", "two"), ("third", "three")):
        done = results[custom_id]
        assert isinstance(done, Completion)
        assert (done.text, done.backend, done.lane, done.model) == (f"echo: {text}", "claude", "cloud", MODEL)
        assert done.input_tokens > 0 and done.output_tokens > 0
    (create,) = server.calls("/v1/messages/batches")
    assert [r["custom_id"] for r in create.body["requests"]] == ["first", "second", "third"]
    assert create.auth == "bearer"


async def test_results_really_arrive_out_of_order(server: AnthropicServer, backend: ClaudeBackend) -> None:
    batch_id = await submit_batch(backend, [("a", ask("1")), ("b", ask("2")), ("c", ask("3"))])
    await wait_for_batch(backend, batch_id, sleep=Pauses())
    response = httpx.get(
        f"{server.url}/v1/messages/batches/{batch_id}/results",
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    )
    order = [json.loads(line)["custom_id"] for line in response.text.splitlines()]
    assert order != ["a", "b", "c"] and sorted(order) == ["a", "b", "c"]


async def test_an_errored_item_is_an_error_value(backend: ClaudeBackend) -> None:
    items = [("good", ask("fine")), ("bad", ask("lost", model="claude-nonesuch-9"))]
    results = await run_batch(backend, items, sleep=Pauses())
    assert isinstance(results["good"], Completion)
    bad = results["bad"]
    assert isinstance(bad, ModelMissing)
    assert "not_found_error" in str(bad)


async def test_batch_requests_follow_the_5x_rules(server: AnthropicServer, backend: ClaudeBackend) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    item = Request(model=MODEL, messages=(Message(role="user", content="n?"),), temperature=0.9, schema=schema)
    results = await run_batch(backend, [("only", item)], sleep=Pauses())
    assert isinstance(results["only"], Completion)
    (create,) = server.calls("/v1/messages/batches")
    params = create.body["requests"][0]["params"]
    assert "temperature" not in params
    assert params["output_config"]["format"]["schema"]["additionalProperties"] is False


async def test_waiting_is_bounded(server: AnthropicServer, backend: ClaudeBackend) -> None:
    server.batch_polls = 1000
    pauses = Pauses()
    with pytest.raises(Timeout, match="in_progress"):
        await run_batch(backend, [("x", ask("slow"))], sleep=pauses, first_poll_s=1.0, max_wait_s=5.0)
    assert sum(pauses.seen) <= 5.0


async def test_cancel_gives_canceled_values(backend: ClaudeBackend) -> None:
    batch_id = await submit_batch(backend, [("p", ask("1")), ("q", ask("2"))])
    assert await cancel_batch(backend, batch_id) == "canceling"
    await wait_for_batch(backend, batch_id, sleep=Pauses())
    results = await fetch_results(backend, batch_id)
    assert set(results) == {"p", "q"}
    assert all(type(r) is BackendError and "canceled" in str(r) for r in results.values())


async def test_bad_custom_ids_are_refused_before_submitting(server: AnthropicServer, backend: ClaudeBackend) -> None:
    with pytest.raises(BadRequest, match="custom_id"):
        await run_batch(backend, [("same", ask("1")), ("same", ask("2"))], sleep=Pauses())
    with pytest.raises(BadRequest, match="custom_id"):
        await run_batch(backend, [("has space", ask("1"))], sleep=Pauses())
    assert server.requests == []


async def test_a_failed_submit_raises(server: AnthropicServer, backend: ClaudeBackend) -> None:
    server.fail_next(401)
    with pytest.raises(AuthError) as caught:
        await run_batch(backend, [("x", ask("1"))], sleep=Pauses())
    assert KEY not in str(caught.value)


async def test_an_unknown_batch_id_is_a_bad_request(backend: ClaudeBackend) -> None:
    with pytest.raises(BadRequest, match="msgbatch_nope"):
        await wait_for_batch(backend, "msgbatch_nope", sleep=Pauses())


async def test_empty_batch_makes_no_call(server: AnthropicServer, backend: ClaudeBackend) -> None:
    assert await run_batch(backend, [], sleep=Pauses()) == {}
    assert server.requests == []


async def test_an_endpoint_without_the_batches_route_is_route_missing_not_model_missing() -> None:
    with AnthropicServer(key=KEY, batches=False) as proxy:
        claude = ClaudeBackend(api_key=KEY, base_url=proxy.url)
        try:
            with pytest.raises(RouteMissing) as caught:
                await run_batch(claude, [("a", ask("1"))], sleep=Pauses())
            assert (await claude.complete(ask("2"))).text  # the Messages API is there
        finally:
            await claude.aclose()
    assert caught.value.reason == "route_missing"
    assert "has no Message Batches route" in caught.value.message and "404" in caught.value.message
    assert KEY not in str(caught.value)
