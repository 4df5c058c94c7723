"""The OpenAI-compatible backend against the fake server's /v1/chat/completions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema
import pytest

from ollama_dist.backends.base import Backend, Message, Request
from ollama_dist.backends.openai_compat import OpenAICompatBackend, chat_completions_url
from ollama_dist.errors import (
    BadResponse,
    Busy,
    ConfigError,
    ModelMissing,
    Timeout,
    Unreachable,
)
from tests.servers.ollama import FakeOllama, fenced, refused_url

pytest_plugins = ["tests.servers.fixtures"]

MODEL = "gemma3:270m"
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def request(text: str = "hello", **fields: Any) -> Request:
    return Request(model=fields.pop("model", MODEL), messages=(Message(role="user", content=text),), **fields)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def test_is_a_local_backend() -> None:
    b: Backend = OpenAICompatBackend("http://127.0.0.1:8080")
    assert (b.name, b.lane) == ("openai_compat", "local")


@pytest.mark.parametrize(
    "base", ["http://127.0.0.1:8080", "http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/"]
)
def test_url_accepts_a_base_with_or_without_v1(base: str) -> None:
    assert chat_completions_url(base) == "http://127.0.0.1:8080/v1/chat/completions"


def test_url_needs_a_scheme() -> None:
    with pytest.raises(ConfigError):
        chat_completions_url("127.0.0.1:8080")


async def test_completion_and_wire_body(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    fake_ollama.add_model("qwen2.5:0.5b", family="qwen2")
    fake_ollama.script(['{"city": "Lisbon"}'])
    b = OpenAICompatBackend(fake_ollama.url + "/v1", client=client, name="lmstudio")
    result = await b.complete(request("Where?", system="JSON only.", schema=CITY_SCHEMA, max_tokens=32,
                                      model="qwen2.5:0.5b"))
    assert result.text == '{"city": "Lisbon"}' and result.model == "qwen2.5:0.5b"
    assert (result.backend, result.lane, result.host, result.stop_reason) == ("lmstudio", "local", fake_ollama.url, "stop")
    assert result.input_tokens > 0 and result.output_tokens > 0
    [sent] = fake_ollama.requests
    assert sent["stream"] is False and sent["max_tokens"] == 32 and sent["temperature"] == 0.0
    assert sent["messages"][0] == {"role": "system", "content": "JSON only."}
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": CITY_SCHEMA},
    }


@pytest.mark.parametrize("model", ["gemma3:270m", "gemma-3-270m-it-Q8_0.gguf", "google/codegemma-7b"])
async def test_a_gemma_models_system_prompt_is_folded_into_the_first_user_turn(
        fake_ollama: FakeOllama, client: httpx.AsyncClient, model: str) -> None:
    """Gemma has no system role (llama_cpp.server's gemma format drops system messages): the
    system text goes before the first user turn's, as Gemma's own template puts it."""
    if model != MODEL:
        fake_ollama.add_model(model)
    b = OpenAICompatBackend(fake_ollama.url, client=client)
    await b.complete(request("Where?", system="JSON only.", model=model))
    [sent] = fake_ollama.requests
    assert sent["messages"] == [{"role": "user", "content": "JSON only.\n\nWhere?"}]


async def test_no_response_format_without_a_schema(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    await OpenAICompatBackend(fake_ollama.url, client=client).complete(request(output_format="json"))
    assert "response_format" not in fake_ollama.requests[-1]


async def test_length_and_fenced_text_pass_through(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    fake_ollama.script([fenced({"city": "Lisbon"})])
    b = OpenAICompatBackend(fake_ollama.url, client=client)
    assert (await b.complete(request())).text == fenced({"city": "Lisbon"})
    fake_ollama.script(["a much longer answer than allowed"])
    assert (await b.complete(request(max_tokens=2))).stop_reason == "length"


async def test_an_answer_at_max_tokens_is_cut_off_though_the_server_says_stop(
    fake_ollama: FakeOllama, client: httpx.AsyncClient
) -> None:
    fake_ollama.script(['{"city": "Li'] * 2 + ['{"city": "Lisbon"}'])  # 3, 3 and 5 tokens
    raw = await client.post(f"{fake_ollama.url}/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "Where?"}], "max_tokens": 3})
    said = raw.json()
    assert (said["choices"][0]["finish_reason"], said["usage"]["completion_tokens"]) == ("stop", 3)
    b = OpenAICompatBackend(fake_ollama.url, client=client)
    cut = await b.complete(request(schema=CITY_SCHEMA, max_tokens=3))
    assert cut.output_tokens == 3 and cut.stop_reason == "length"
    assert "taken as cut off" in cut.warnings[0]
    whole = await b.complete(request(schema=CITY_SCHEMA, max_tokens=6))
    assert (whole.output_tokens, whole.stop_reason, whole.warnings) == (5, "stop", ())


def forms(fake: FakeOllama) -> list[str]:
    return [body["response_format"]["type"] for body in fake.requests if "response_format" in body]


async def test_a_json_object_only_server_gets_the_schema_its_way_from_then_on(
    fake_ollama: FakeOllama, client: httpx.AsyncClient
) -> None:
    """llama_cpp.server's dialect: json_schema gets a 500 naming response_format; the backend sends the
    same request once more as {"type": "json_object", "schema": ...} and keeps that form."""
    fake_ollama.fault("json_object_only", times=None)
    fake_ollama.script(['{"city": "Lisbon"}', '{"city": "Osaka"}'])
    b = OpenAICompatBackend(fake_ollama.url, client=client)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    first = await b.complete(request(schema=schema))
    second = await b.complete(request(schema=schema))
    assert (first.text, second.text) == ('{"city": "Lisbon"}', '{"city": "Osaka"}')
    assert forms(fake_ollama) == ["json_schema", "json_object", "json_object"]
    assert fake_ollama.requests[1]["response_format"] == {"type": "json_object", "schema": {**schema, "additionalProperties": False}}
    assert b.schema_form == "json_object"
    assert len(first.warnings) == 1 and "rejects response_format json_schema" in first.warnings[0]
    assert second.warnings == ()
    await b.complete(request(output_format="json"))  # no schema: still no response_format at all
    assert "response_format" not in fake_ollama.requests[-1]


async def test_a_json_schema_server_keeps_json_schema(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    b = OpenAICompatBackend(fake_ollama.url, client=client)
    await b.complete(request(schema=CITY_SCHEMA))
    assert b.schema_form == "json_schema"
    fake_ollama.fault("json_object_only")  # learned: a later rejection is that request's own failure
    with pytest.raises(BadResponse):
        await b.complete(request(schema=CITY_SCHEMA))
    assert forms(fake_ollama) == ["json_schema", "json_schema"]


async def test_other_failures_are_not_retried_in_the_other_form(
    fake_ollama: FakeOllama, client: httpx.AsyncClient
) -> None:
    b = OpenAICompatBackend(fake_ollama.url, client=client)
    fake_ollama.fault("http_500")
    with pytest.raises(BadResponse) as caught:
        await b.complete(request(schema=CITY_SCHEMA))
    assert "llama runner process has terminated" in caught.value.message
    assert forms(fake_ollama) == ["json_schema"] and b.schema_form is None


async def test_when_both_forms_fail_the_second_failure_is_reported(
    fake_ollama: FakeOllama, client: httpx.AsyncClient
) -> None:
    b = OpenAICompatBackend(fake_ollama.url, client=client)
    fake_ollama.fault("json_object_only")
    fake_ollama.fault("http_500")
    with pytest.raises(BadResponse) as caught:
        await b.complete(request(schema=CITY_SCHEMA))
    assert "llama runner process has terminated" in caught.value.message
    assert forms(fake_ollama) == ["json_schema", "json_object"] and b.schema_form is None


async def test_refused_is_unreachable(client: httpx.AsyncClient) -> None:
    with pytest.raises(Unreachable):
        await OpenAICompatBackend(refused_url(), client=client).complete(request())


async def test_missing_model_reads_the_openai_error_shape(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    with pytest.raises(ModelMissing) as caught:
        await OpenAICompatBackend(fake_ollama.url, client=client).complete(request(model="nope"))
    assert "model 'nope' not found" in caught.value.message


@pytest.mark.parametrize(
    ("fault", "error"),
    [("busy", Busy), ("http_500", BadResponse), ("not_json", BadResponse), ("disconnect", BadResponse)],
)
async def test_faults_are_translated(
    fake_ollama: FakeOllama, client: httpx.AsyncClient, fault: Any, error: type[Exception]
) -> None:
    fake_ollama.fault(fault)
    with pytest.raises(error):
        await OpenAICompatBackend(fake_ollama.url, client=client).complete(request())


async def test_stall_is_a_timeout(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    fake_ollama.fault("stall", seconds=30)
    with pytest.raises(Timeout):
        await OpenAICompatBackend(fake_ollama.url, client=client).complete(request(timeout_s=0.3))


async def test_own_client_is_closed(fake_ollama: FakeOllama) -> None:
    async with OpenAICompatBackend(fake_ollama.url, api_key="local") as b:
        assert (await b.complete(request())).text


@pytest.mark.real_model
async def test_real_model_answers_schema_valid_json(real_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    prompt = 'Extract the city from this sentence as JSON {"city": ...}.\nSentence: Maria flew to Lisbon last week.'
    result = await OpenAICompatBackend(real_ollama.url, client=client).complete(
        request(prompt, schema=CITY_SCHEMA, max_tokens=64)
    )
    value = json.loads(result.text)
    jsonschema.validate(value, CITY_SCHEMA)
    assert value["city"].strip() == "Lisbon"
