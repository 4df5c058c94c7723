"""The Ollama backend against the fake Ollama server over real sockets, fault by fault."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema
import pytest

from ollama_dist.backends.base import Backend, Message, Request
from ollama_dist.backends.ollama import (
    OllamaBackend,
    normalize_host,
    num_ctx_for,
    status,
)
from ollama_dist.errors import (
    BadRequest,
    BadResponse,
    Busy,
    ModelMissing,
    Timeout,
    Unreachable,
)
from tests.servers.ollama import FakeOllama, chatty, fenced, refused_url

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


def backend(*hosts: str, http: httpx.AsyncClient, **kwargs: Any) -> OllamaBackend:
    return OllamaBackend(hosts, client=http, **kwargs)


def test_is_a_backend() -> None:
    b: Backend = OllamaBackend()
    assert (b.name, b.lane) == ("ollama", "local")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", "http://127.0.0.1:11434"),
        ("localhost", "http://localhost:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("gpu-box:11500", "http://gpu-box:11500"),
        ("http://gpu-box", "http://gpu-box:80"),
        ("https://ollama.example.com/", "https://ollama.example.com:443"),
        ("http://127.0.0.1:11434", "http://127.0.0.1:11434"),
    ],
    ids=["empty", "bare-name", "bind-all", "host-port", "http-no-port", "https-no-port", "full"],
)
def test_normalize_host_follows_ollama_rules(given: str, expected: str) -> None:
    assert normalize_host(given) == expected


async def test_completion_and_wire_body(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    fake_ollama.script(["Lisbon"])
    result = await backend(fake_ollama.url, http=client).complete(
        request("Where?", system="Be brief.", max_tokens=64, temperature=0.2)
    )
    assert result.text == "Lisbon" and result.model == MODEL
    assert (result.backend, result.lane, result.host) == ("ollama", "local", fake_ollama.url)
    assert result.stop_reason == "stop" and result.input_tokens > 0 and result.output_tokens > 0
    assert result.latency_s >= 0 and result.warnings == ()
    [sent] = fake_ollama.requests
    assert sent["stream"] is False and sent["keep_alive"] == "10m" and "format" not in sent
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where?"}]
    assert sent["options"] == {"num_ctx": 2048, "temperature": 0.2, "num_predict": 64}


@pytest.mark.parametrize(
    ("fields", "expected_format"),
    [
        ({"schema": CITY_SCHEMA}, CITY_SCHEMA),
        ({"output_format": "json"}, "json"),
        ({"output_format": "yaml"}, "json"),
        ({"output_format": "text"}, None),
    ],
    ids=["schema", "json", "yaml", "text"],
)
async def test_format_follows_the_request(
    fake_ollama: FakeOllama, client: httpx.AsyncClient, fields: dict[str, Any], expected_format: Any
) -> None:
    await backend(fake_ollama.url, http=client, keep_alive=-1).complete(request(**fields))
    sent = fake_ollama.requests[-1]
    assert sent.get("format") == expected_format and sent["keep_alive"] == -1


async def test_num_ctx_holds_a_6000_token_prompt(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    text = "lorem ipsum dolor sit amet " * 889  # 24,003 chars: about 6,000 tokens
    result = await backend(fake_ollama.url, http=client).complete(request(text, max_tokens=512))
    num_ctx = fake_ollama.requests[-1]["options"]["num_ctx"]
    assert num_ctx % 1024 == 0 and num_ctx >= 6000 + 512
    assert result.input_tokens == 6001 + 4  # the fake's count: nothing was cut
    assert not any("truncation" in w for w in result.warnings)
    # the same prompt sent raw, as most clients do, without num_ctx:
    raw = await client.post(
        f"{fake_ollama.url}/api/chat",
        json={"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": False},
    )
    assert raw.json()["prompt_eval_count"] == 4096  # silently truncated to the default context


async def test_num_ctx_is_capped_by_the_model_and_truncation_is_flagged(client: httpx.AsyncClient) -> None:
    with FakeOllama(context_length=4096) as srv:
        result = await backend(srv.url, http=client).complete(request("word " * 4800))
        assert srv.requests[-1]["options"]["num_ctx"] == 4096
        assert any(w.startswith("probable truncation") for w in result.warnings)
        assert any("context length (4096)" in w for w in result.warnings)


async def test_context_length_is_asked_once_per_host_and_model(
    fake_ollama: FakeOllama, client: httpx.AsyncClient
) -> None:
    b = backend(fake_ollama.url, http=client)
    await b.complete(request())
    await b.complete(request())
    assert fake_ollama.log.count(("POST", "/api/show")) == 1
    assert fake_ollama.log.count(("POST", "/api/chat")) == 2


def test_num_ctx_sizing() -> None:
    assert num_ctx_for(request("hi", max_tokens=100)) == 2048
    assert num_ctx_for(request("x" * 30_000, max_tokens=1024)) == 12288
    assert num_ctx_for(request("x" * 30_000, max_tokens=1024), limit=8192) == 8192


async def test_done_reason_length_is_the_stop_reason(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    fake_ollama.script(["a much longer answer than allowed"])
    result = await backend(fake_ollama.url, http=client).complete(request(max_tokens=2))
    assert result.stop_reason == "length" and result.output_tokens == 2


@pytest.mark.parametrize("answer", [fenced({"city": "Lisbon"}), chatty({"city": "Lisbon"}), '{"town": 3}'],
                         ids=["fenced", "chatty", "ignores-schema"])
async def test_answers_pass_through_as_text(fake_ollama: FakeOllama, client: httpx.AsyncClient, answer: str) -> None:
    fake_ollama.script([answer])
    result = await backend(fake_ollama.url, http=client).complete(request(schema=CITY_SCHEMA))
    assert result.text == answer  # judging it is the validator's job


async def test_refused_connection_is_unreachable(client: httpx.AsyncClient) -> None:
    with pytest.raises(Unreachable) as caught:
        await backend(refused_url(), http=client).complete(request())
    assert caught.value.hint is not None and "ollama-dist ollama on" in caught.value.hint
    assert caught.value.escalate
    assert isinstance(caught.value.__cause__, httpx.ConnectError)  # translated where it entered


async def test_stall_is_a_timeout(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    fake_ollama.fault("stall", seconds=30)
    with pytest.raises(Timeout):
        await backend(fake_ollama.url, http=client).complete(request(timeout_s=0.3))


async def test_missing_model_names_the_pull_command(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    with pytest.raises(ModelMissing) as caught:
        await backend(fake_ollama.url, http=client).complete(request(model="qwen3:8b"))
    assert caught.value.hint == "ollama pull qwen3:8b"
    assert "model 'qwen3:8b' not found" in caught.value.message


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("http_500", BadResponse, "llama runner process has terminated"),
        ("not_json", BadResponse, "not JSON"),
        ("midstream_error", BadResponse, "an error was encountered while running the model"),
        ("disconnect", BadResponse, "broke the connection"),
        ("busy", Busy, "maximum pending requests exceeded"),
    ],
)
async def test_faults_are_translated(
    fake_ollama: FakeOllama, client: httpx.AsyncClient, fault: Any, error: type[Exception], words: str
) -> None:
    fake_ollama.fault(fault)
    with pytest.raises(error) as caught:
        await backend(fake_ollama.url, http=client).complete(request())
    assert words in str(caught.value)


async def test_a_full_queue_is_busy(client: httpx.AsyncClient) -> None:
    with FakeOllama(max_queue=0) as srv:
        srv.fault("stall", seconds=30)
        b = backend(srv.url, http=client)
        first = asyncio.create_task(b.complete(request("first", timeout_s=30)))
        while srv.max_active == 0:
            await asyncio.sleep(0.01)
        with pytest.raises(Busy):
            await b.complete(request("second"))
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert b.in_flight(srv.url) == 0


async def test_a_server_error_400_is_a_bad_request(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    with pytest.raises(BadRequest) as caught:  # Go durations need a unit
        await backend(fake_ollama.url, http=client, keep_alive="3600").complete(request())
    assert "missing unit" in caught.value.message


async def test_pool_skips_a_dead_host_and_marks_it_down(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    now = [1000.0]
    dead = refused_url()
    b = backend(dead, fake_ollama.url, http=client, down_for_s=5.0, clock=lambda: now[0])
    first = await b.complete(request())
    assert first.host == fake_ollama.url
    assert b.down_hosts() == (dead,)
    now[0] += 6.0
    assert b.down_hosts() == ()


async def test_pool_all_down_is_unreachable_until_the_mark_expires(client: httpx.AsyncClient) -> None:
    now = [0.0]
    b = backend(refused_url(), refused_url(), http=client, clock=lambda: now[0])
    with pytest.raises(Unreachable) as first:
        await b.complete(request())
    assert "no Ollama host is reachable" in first.value.message
    with pytest.raises(Unreachable) as second:
        await b.complete(request())
    assert second.value.retry_after == 5.0  # failed fast: both hosts are marked down


async def test_pool_prefers_the_idle_host(client: httpx.AsyncClient) -> None:
    with FakeOllama() as busy_host, FakeOllama() as idle_host:
        busy_host.fault("stall", seconds=30)
        b = backend(busy_host.url, idle_host.url, http=client)
        slow = asyncio.create_task(b.complete(request("slow", timeout_s=30)))
        while busy_host.max_active == 0:
            await asyncio.sleep(0.01)
        assert b.in_flight(busy_host.url) == 1
        quick = await b.complete(request("quick"))
        assert quick.host == idle_host.url
        assert [r["messages"][-1]["content"] for r in idle_host.requests] == ["quick"]
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow


async def test_pool_moves_on_from_a_busy_host(client: httpx.AsyncClient) -> None:
    with FakeOllama() as first, FakeOllama() as second:
        first.fault("busy")
        result = await backend(first.url, second.url, http=client).complete(request())
        assert result.host == second.url


async def test_concurrent_calls_all_complete(client: httpx.AsyncClient) -> None:
    with FakeOllama(num_parallel=2, latency_s=0.01) as srv:
        b = backend(srv.url, http=client)
        results = await asyncio.gather(*(b.complete(request(f"job {i}")) for i in range(20)))
        assert len(results) == 20 and srv.max_active == 2 and b.in_flight(srv.url) == 0
        assert srv.log.count(("POST", "/api/show")) == 1  # the burst shares one lookup


async def test_backend_makes_and_closes_its_own_client(fake_ollama: FakeOllama) -> None:
    async with OllamaBackend([fake_ollama.url]) as b:
        assert (await b.complete(request())).text


async def test_status_reports_version_models_and_loaded(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    await backend(fake_ollama.url, http=client).complete(request())
    report = await status(client, fake_ollama.url)
    assert report.reachable and report.version == fake_ollama.version and report.error is None
    assert [m.name for m in report.models] == [MODEL] and report.models[0].quantization == "Q4_K_M"
    [loaded] = report.loaded
    assert (loaded.name, loaded.context_length) == (MODEL, 2048) and loaded.size > 0 and loaded.expires_at


async def test_status_of_a_dead_host(client: httpx.AsyncClient) -> None:
    report = await status(client, refused_url())
    assert not report.reachable and report.error and report.version is None


# --- the real model (Gemma 3 270M through llama.cpp) -----------------------------------------

SENTENCE = "Maria flew to Lisbon last week to visit her aunt."
CITY_PROMPT = f'Extract the city from this sentence as JSON {{"city": ...}}.\nSentence: {SENTENCE}'


@pytest.mark.real_model
async def test_real_model_extracts_a_city_as_schema_valid_json(
    real_ollama: FakeOllama, client: httpx.AsyncClient
) -> None:
    result = await backend(real_ollama.url, http=client).complete(request(CITY_PROMPT, schema=CITY_SCHEMA, max_tokens=64))
    value = json.loads(result.text)
    jsonschema.validate(value, CITY_SCHEMA)
    assert value["city"].strip() == "Lisbon" and value["city"].strip() in SENTENCE
    assert result.input_tokens > 10 and result.output_tokens > 0 and result.stop_reason == "stop"


@pytest.mark.real_model
async def test_real_model_is_deterministic_at_temperature_zero(
    real_ollama: FakeOllama, client: httpx.AsyncClient
) -> None:
    b = backend(real_ollama.url, http=client)
    prompt = request(CITY_PROMPT, schema=CITY_SCHEMA, max_tokens=64, temperature=0.0)
    first, second = await b.complete(prompt), await b.complete(prompt)
    assert first.text == second.text
    assert (first.input_tokens, first.output_tokens) == (second.input_tokens, second.output_tokens)


@pytest.mark.real_model
async def test_real_model_json_mode_without_schema_closes_the_object(
    real_ollama: FakeOllama, client: httpx.AsyncClient
) -> None:
    review = 'Classify the sentiment of this review as JSON {"sentiment": "positive"|"negative"}: Cold food.'
    result = await backend(real_ollama.url, http=client).complete(request(review, output_format="json", max_tokens=64))
    assert real_ollama.requests[-1]["format"] == "json"
    assert isinstance(json.loads(result.text), dict)


@pytest.mark.real_model
async def test_a_request_given_up_stops_its_generation_as_ollama_does(
    real_ollama: FakeOllama, client: httpx.AsyncClient
) -> None:
    """A timed-out request closes its connection; Ollama then cancels that generation, so the
    model is free for the next request instead of writing an answer nobody reads."""
    b = backend(real_ollama.url, http=client)
    with pytest.raises(Timeout):
        await b.complete(request("Write a very long story about a dragon.", max_tokens=4000, timeout_s=0.5))
    for _ in range(100):  # the server notices the closed connection within a poll or two
        if real_ollama.cancelled:
            break
        await asyncio.sleep(0.05)
    assert real_ollama.cancelled == 1
    result = await b.complete(request(CITY_PROMPT, schema=CITY_SCHEMA, max_tokens=64))
    assert json.loads(result.text)["city"].strip() == "Lisbon"
