"""The fake Anthropic API itself: wire shapes, rules and faults, seen by raw HTTP and the SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest

from tests.servers.anthropic import AnthropicServer, minimal_instance, tokens

KEY = "sk-ant-test-SECRET-server"
MODEL = "claude-sonnet-5-5"
OLD_MODEL = "claude-haiku-4-5"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer(key=KEY) as fake:
        yield fake


def body(model: str = MODEL, text: str = "Hello there", **fields: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": text}], **fields}


def post(server: AnthropicServer, payload: Any, headers: dict[str, str] = HEADERS, path: str = "/v1/messages") -> httpx.Response:
    return httpx.post(server.url + path, json=payload, headers=headers)


def test_message_shape(server: AnthropicServer) -> None:
    response = post(server, body())
    assert response.status_code == 200
    assert response.headers["request-id"].startswith("req_")
    message = response.json()
    assert {k: message[k] for k in ("type", "role", "model", "stop_reason", "stop_sequence")} == {
        "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn", "stop_sequence": None,
    }
    assert message["id"].startswith("msg_")
    usage = message["usage"]
    assert set(usage) >= {
        "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "service_tier",
    }
    assert usage["input_tokens"] == tokens("Hello there") == 3
    assert usage["service_tier"] == "standard"


def test_5x_answers_put_a_signed_thinking_block_first(server: AnthropicServer) -> None:
    content = post(server, body()).json()["content"]
    assert [b["type"] for b in content] == ["thinking", "text"]
    assert content[0]["signature"] and content[0]["thinking"]
    old = post(server, body(OLD_MODEL)).json()["content"]
    assert [b["type"] for b in old] == ["text"]
    off = post(server, body(thinking={"type": "disabled"})).json()["content"]
    assert [b["type"] for b in off] == ["text"]


@pytest.mark.parametrize("param", ["temperature", "top_p", "top_k"])
def test_5x_models_reject_sampling(server: AnthropicServer, param: str) -> None:
    response = post(server, {**body(), param: 0.5})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert param in response.json()["error"]["message"]
    assert post(server, {**body(OLD_MODEL), param: 0.5}).status_code == 200


def test_5x_models_reject_manual_thinking(server: AnthropicServer) -> None:
    response = post(server, body(thinking={"type": "enabled", "budget_tokens": 1024}))
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("headers", "status", "error_type"),
    [
        ({"authorization": f"Bearer {KEY}", "anthropic-version": "2026-10-21"}, 200, None),
        ({"x-api-key": KEY, "anthropic-version": "2023-06-01"}, 200, None),
        ({"x-api-key": "wrong", "anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ({"authorization": "Bearer wrong", "anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ({"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ({"x-api-key": KEY}, 400, "invalid_request_error"),
    ],
    ids=["bearer", "x-api-key", "wrong-key", "wrong-bearer", "no-key", "no-version"],
)
def test_auth_and_version_headers(
    server: AnthropicServer, headers: dict[str, str], status: int, error_type: str | None
) -> None:
    response = post(server, body(), headers=headers)
    assert response.status_code == status
    if error_type:
        error = response.json()
        assert error["type"] == "error" and error["error"]["type"] == error_type
        assert error["request_id"] == response.headers["request-id"]
    assert KEY not in repr(server.requests)


@pytest.mark.parametrize("missing", ["model", "max_tokens", "messages"])
def test_required_fields(server: AnthropicServer, missing: str) -> None:
    payload = body()
    del payload[missing]
    response = post(server, payload)
    assert response.status_code == 400
    assert missing in response.json()["error"]["message"]


def test_unknown_model_is_404_and_snapshots_are_known(server: AnthropicServer) -> None:
    response = post(server, body("claude-nonesuch-9"))
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"
    assert post(server, body("claude-haiku-4-5-20251001")).status_code == 200


def test_scripted_answers_in_order_then_default(server: AnthropicServer) -> None:
    server.answer(OLD_MODEL, ["one", "two"])
    texts = [post(server, body(OLD_MODEL)).json()["content"][-1]["text"] for _ in range(3)]
    assert texts[:2] == ["one", "two"]
    assert texts[2].startswith("Fake answer")


def test_callable_answer_and_wildcard(server: AnthropicServer) -> None:
    server.answer("*", lambda request: request["messages"][0]["content"].upper())
    assert post(server, body(OLD_MODEL, text="shout")).json()["content"][-1]["text"] == "SHOUT"


def test_max_tokens_caps_thinking_plus_text(server: AnthropicServer) -> None:
    server.answer(MODEL, ["word " * 100])
    message = post(server, body(max_tokens=20)).json()
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] <= 20
    assert sum(tokens(b.get("text", b.get("thinking", ""))) for b in message["content"]) == message["usage"]["output_tokens"]


def test_stop_sequences(server: AnthropicServer) -> None:
    server.answer(OLD_MODEL, ["alpha END beta"])
    message = post(server, body(OLD_MODEL, stop_sequences=["END"])).json()
    assert (message["content"][0]["text"], message["stop_reason"], message["stop_sequence"]) == (
        "alpha ", "stop_sequence", "END",
    )


def test_count_tokens_matches_message_usage(server: AnthropicServer) -> None:
    payload = body(system="You are terse.", text="Count me, please.")
    counted = post(server, {k: v for k, v in payload.items() if k != "max_tokens"}, path="/v1/messages/count_tokens")
    assert counted.json() == {"input_tokens": post(server, payload).json()["usage"]["input_tokens"]}


def test_cache_control_creates_then_reads_the_prefix(server: AnthropicServer) -> None:
    system = [{"type": "text", "text": "A long shared preamble. " * 10, "cache_control": {"type": "ephemeral"}}]
    first = post(server, body(system=system)).json()["usage"]
    second = post(server, body(system=system)).json()["usage"]
    prefix = tokens("A long shared preamble. " * 10)
    assert (first["cache_creation_input_tokens"], first["cache_read_input_tokens"]) == (prefix, 0)
    assert (second["cache_creation_input_tokens"], second["cache_read_input_tokens"]) == (0, prefix)
    assert first["input_tokens"] == second["input_tokens"] == tokens("A long shared preamble. " * 10 + "Hello there") - prefix


SCHEMAS: dict[str, dict[str, Any]] = {
    "object": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
    "enum": {"type": "string", "enum": ["red", "green"]},
    "bounded-number": {"type": "number", "minimum": 2.5, "maximum": 9},
    "negative-integer": {"type": "integer", "maximum": -3},
    "array": {"type": "array", "items": {"type": "string", "minLength": 3}, "minItems": 2},
    "nullable": {"type": ["null", "integer"], "minimum": 1},
    "refs": {
        "$defs": {"Item": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}},
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 1}},
        "required": ["items"],
    },
    "all-of": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer", "minimum": 3}}, "required": ["a"]},
            {"properties": {"b": {"type": "string"}}, "required": ["b"]},
        ]
    },
    "any-of": {"anyOf": [{"type": "string", "format": "date"}, {"type": "integer"}]},
    "sdk-folded-hints": {"type": "integer", "description": "A score\n\n{minimum: 1, maximum: 5}"},
}


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_minimal_instance_is_valid(name: str) -> None:
    schema = SCHEMAS[name]
    if name == "sdk-folded-hints":
        schema = {**schema, "minimum": 1, "maximum": 5}
        assert minimal_instance(SCHEMAS[name]) == 1
    jsonschema.validate(minimal_instance(SCHEMAS[name]), schema)


def test_structured_output_default_answer_fits_the_schema(server: AnthropicServer) -> None:
    schema = SCHEMAS["refs"]
    message = post(server, body(output_config={"format": {"type": "json_schema", "schema": schema}})).json()
    jsonschema.validate(json.loads(message["content"][-1]["text"]), schema)
    bad = post(server, body(output_config={"format": {"type": "json", "schema": schema}}))
    assert bad.status_code == 400


def test_429_carries_retry_after_and_rate_limit_headers(server: AnthropicServer) -> None:
    server.fail_next(429, retry_after=7)
    response = post(server, body())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert response.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert post(server, body()).status_code == 200  # the fault was used up


@pytest.mark.parametrize(
    ("status", "error_type"), [(529, "overloaded_error"), (500, "api_error"), (401, "authentication_error")]
)
def test_faults_use_the_error_shape(server: AnthropicServer, status: int, error_type: str) -> None:
    server.fail_next(status, times=2)
    for _ in range(2):
        response = post(server, body())
        assert response.status_code == status and response.json()["error"]["type"] == error_type
    assert post(server, body()).status_code == 200


def test_stall_then_answer(server: AnthropicServer) -> None:
    server.stall_next(0.05)
    assert post(server, body()).status_code == 200


async def test_streaming_with_the_sdk(server: AnthropicServer) -> None:
    server.answer(MODEL, ["first stream", "streamed answer, in several pieces of text"])
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.url, max_retries=0)
    events = []
    async for event in await client.messages.create(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        events.append(event.type)
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
    async with client.messages.stream(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "hi"}]) as stream:
        final = await stream.get_final_message()
    await client.close()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[1].text == "streamed answer, in several pieces of text"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 1


def test_batches_lifecycle(server: AnthropicServer) -> None:
    requests = [
        {"custom_id": "r1", "params": body(OLD_MODEL)},
        {"custom_id": "r2", "params": body(temperature=1.0)},  # 5.x + sampling: errored
    ]
    created = post(server, {"requests": requests}, path="/v1/messages/batches").json()
    assert created["processing_status"] == "in_progress" and created["results_url"] is None
    assert created["request_counts"]["processing"] == 2
    url = f"{server.url}/v1/messages/batches/{created['id']}"
    assert httpx.get(url + "/results", headers=HEADERS).status_code == 400
    first = httpx.get(url, headers=HEADERS).json()  # batch_polls=1: one in_progress answer
    ended = httpx.get(url, headers=HEADERS).json()
    assert first["processing_status"] == "in_progress"
    assert ended["processing_status"] == "ended" and ended["ended_at"]
    assert ended["request_counts"] == {"processing": 0, "succeeded": 1, "errored": 1, "canceled": 0, "expired": 0}
    lines = [json.loads(line) for line in httpx.get(ended["results_url"], headers=HEADERS).text.splitlines()]
    assert [line["custom_id"] for line in lines] == ["r2", "r1"]
    assert lines[0]["result"]["error"]["error"]["type"] == "invalid_request_error"
    assert lines[1]["result"]["message"]["usage"]["service_tier"] == "batch"
    assert httpx.delete(url, headers=HEADERS).json()["type"] == "message_batch_deleted"


def test_batch_create_validates_custom_ids(server: AnthropicServer) -> None:
    same = [{"custom_id": "x", "params": body()}, {"custom_id": "x", "params": body()}]
    assert post(server, {"requests": same}, path="/v1/messages/batches").status_code == 400
    assert post(server, {"requests": []}, path="/v1/messages/batches").status_code == 400


def test_requests_record_the_auth_scheme_never_the_key(server: AnthropicServer) -> None:
    post(server, body(), headers={"authorization": f"Bearer {KEY}", "anthropic-version": "2026-10-21"})
    post(server, body())
    assert [r.auth for r in server.requests] == ["bearer", "x-api-key"]
    assert all(KEY not in json.dumps(r.headers) for r in server.requests)


def test_runnable_by_hand() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.anthropic", "--port", "0", "--key", KEY],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split()[line.split().index("at") + 1]
        response = httpx.post(url + "/v1/messages", json=body(), headers=HEADERS)
        assert response.status_code == 200
        assert KEY not in line
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_scripted_tool_calls_drive_a_client_through_its_tools(server: AnthropicServer) -> None:
    from tests.servers.anthropic import tool_results

    weather = {"name": "weather", "description": "The weather in a city.",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}

    def plan(request: dict[str, Any]) -> list[dict[str, Any]] | None:
        return None if tool_results(request) else [{"name": "weather", "input": {"city": "Lisbon"}}]

    server.use_tools("*", plan)
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.url, max_retries=0)
    ask = [{"role": "user", "content": "Weather in Lisbon?"}]
    first = await client.messages.create(model=OLD_MODEL, max_tokens=256, messages=ask, tools=[weather])  # type: ignore[arg-type,list-item]
    assert first.stop_reason == "tool_use"
    (call,) = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "weather" and call.input == {"city": "Lisbon"}
    async with client.messages.stream(model=OLD_MODEL, max_tokens=256, messages=ask, tools=[weather]) as stream:  # type: ignore[arg-type,list-item]
        streamed = await stream.get_final_message()
    assert [b.type for b in streamed.content] == ["tool_use"] and streamed.content[0].input == {"city": "Lisbon"}  # type: ignore[union-attr]
    answered = [*ask, {"role": "assistant", "content": [call.model_dump()]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}]
    final = await client.messages.create(model=OLD_MODEL, max_tokens=256, messages=answered, tools=[weather])  # type: ignore[arg-type,list-item]
    assert final.stop_reason == "end_turn" and final.content[0].type == "text"
    assert tool_results(server.calls("/v1/messages")[-1].body)[0]["content"] == "sunny"
    with pytest.raises(anthropic.BadRequestError, match="not among the tools offered"):
        await client.messages.create(model=OLD_MODEL, max_tokens=256, messages=ask)
    await client.close()
