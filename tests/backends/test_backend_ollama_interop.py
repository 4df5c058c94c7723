"""The Ollama backend against servers that differ from the documents, and against Ollama 0.15.5+.

Each case is a mode of the fake server over a real socket: a missing route, a failing /api/show,
a server that always says "stop", one that streams though asked not to, thinking models, the
VRAM-sized default context and the reload a different num_ctx costs, per-host slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ollama_dist.backends.base import Message, Request
from ollama_dist.backends.local import FallbackBackend
from ollama_dist.backends.ollama import OllamaBackend, num_ctx_for
from ollama_dist.backends.openai_compat import OpenAICompatBackend
from ollama_dist.errors import BadResponse, ModelMissing, RouteMissing
from tests.servers.ollama import FakeOllama

pytest_plugins = ["tests.servers.fixtures"]

MODEL = "gemma3:270m"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def request(text: str = "hello", **fields: Any) -> Request:
    return Request(model=fields.pop("model", MODEL), messages=(Message(role="user", content=text),), **fields)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


# --- point 2: a 404 without Ollama's model body is a missing route ---------------------------


async def test_a_404_without_a_model_body_names_the_route_not_a_pull(client: httpx.AsyncClient) -> None:
    with FakeOllama(broken_routes={"/api/chat": 404}) as srv:
        with pytest.raises(RouteMissing) as caught:
            await OllamaBackend([srv.url], client=client).complete(request())
    assert "does not speak the Ollama API at /api/chat" in caught.value.message
    assert caught.value.reason == "route_missing" and "ollama pull" not in str(caught.value)
    assert "ollama status" in (caught.value.hint or "")


async def test_a_missing_model_is_still_a_missing_model(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    with pytest.raises(ModelMissing) as caught:
        await OllamaBackend([fake_ollama.url], client=client).complete(request(model="qwen3:8b"))
    assert caught.value.hint == "ollama pull qwen3:8b"


async def test_the_pool_and_the_local_tier_move_on_from_a_server_that_is_not_ollama(
    fake_ollama: FakeOllama, client: httpx.AsyncClient
) -> None:
    with FakeOllama(broken_routes={"/api/chat": 404}) as impostor:
        pooled = await OllamaBackend([impostor.url, fake_ollama.url], client=client).complete(request())
        assert pooled.host == fake_ollama.url
        tier = FallbackBackend([OllamaBackend([impostor.url], client=client),
                                OpenAICompatBackend(fake_ollama.url, client=client, name="openai_compat")])
        answered = await tier.complete(request())
        assert (answered.backend, answered.host) == ("openai_compat", fake_ollama.url)


# --- point 3: /api/show is a hint, not a gate -------------------------------------------------


@pytest.mark.parametrize("status", [404, 401, 503])
async def test_a_failing_show_does_not_stop_the_job(client: httpx.AsyncClient, status: int) -> None:
    with FakeOllama(broken_routes={"/api/show": status}) as srv:
        backend = OllamaBackend([srv.url], client=client)
        first = await backend.complete(request(max_tokens=100))
        await backend.complete(request(max_tokens=100))
        assert first.text and srv.requests[-1]["options"]["num_ctx"] == num_ctx_for(request(max_tokens=100))
        asked = srv.log.count(("POST", "/api/show"))
        assert asked == (2 if status == 503 else 1)  # a busy server is asked again; the others are not


# --- point 5: a cut-off answer from a server that always says "stop" --------------------------


async def test_eval_count_at_num_predict_is_cut_off_whatever_done_reason_says(client: httpx.AsyncClient) -> None:
    with FakeOllama(always_stop=True) as srv:
        srv.script(['{"name": "Ann", "gender": "fem', '{"a": 1}'])
        backend = OllamaBackend([srv.url], client=client)
        cut = await backend.complete(request(max_tokens=5))
        whole = await backend.complete(request(max_tokens=50))
    assert srv.requests[0]["options"]["num_predict"] == 5
    assert cut.stop_reason == "length" and any("taken as cut off" in w for w in cut.warnings)
    assert whole.stop_reason == "stop" and whole.warnings == ()


# --- Ollama 0.15.5+: VRAM-sized default context, reloads ---------------------------------------


async def test_one_num_ctx_per_model_and_host_keeps_reloads_few(client: httpx.AsyncClient) -> None:
    sizes = [1000, 3000, 6000, 2000, 500]  # words: the context each needs goes up and down
    with FakeOllama() as srv:
        backend = OllamaBackend([srv.url], client=client)
        for words in sizes:
            await backend.complete(request("word " * words, max_tokens=64))
        sent = [r["options"]["num_ctx"] for r in srv.requests]
        assert sent == sorted(sent) and len(set(sent)) == 3 and srv.reloads == 2  # it only grows
        assert backend.num_ctx(srv.url, MODEL) == sent[-1]
    naive = [num_ctx_for(request("word " * words, max_tokens=64)) for words in sizes]
    assert sum(a != b for a, b in zip(naive, naive[1:], strict=False)) == 4  # sized per request: 4 reloads


async def test_the_loaded_context_from_api_ps_is_reused(client: httpx.AsyncClient) -> None:
    with FakeOllama(vram_gib=24) as srv:
        httpx.post(f"{srv.url}/api/chat", json={"model": MODEL, "messages": [], "stream": False})  # another client
        assert srv.loaded == {MODEL: 32768}  # the 24 GiB default
        await OllamaBackend([srv.url], client=client).complete(request(max_tokens=64))
        assert srv.requests[-1]["options"]["num_ctx"] == 32768 and srv.reloads == 0


# --- thinking models -------------------------------------------------------------------------


async def test_deterministic_jobs_ask_for_no_thinking(client: httpx.AsyncClient) -> None:
    with FakeOllama() as srv:
        srv.add_model("qwen3:0.6b", thinking=True)
        backend = OllamaBackend([srv.url], client=client)
        result = await backend.complete(request(model="qwen3:0.6b", schema=SCHEMA))
        assert srv.requests[-1]["think"] is False and result.thinking_tokens == 0
        await backend.complete(request(model="qwen3:0.6b", temperature=0.7))  # free text, sampled
        assert "think" not in srv.requests[-1]


async def test_gpt_oss_gets_a_level_and_its_trace_is_not_the_answer(client: httpx.AsyncClient) -> None:
    with FakeOllama() as srv:
        srv.add_model("gpt-oss:20b", thinking=True, family="gptoss")
        srv.script(['{"city": "Lisbon"}'])
        result = await OllamaBackend([srv.url], client=client).complete(request(model="gpt-oss:20b", schema=SCHEMA))
    assert srv.requests[-1]["think"] == "low"
    assert result.text == '{"city": "Lisbon"}' and 0 < result.thinking_tokens < result.output_tokens
    assert any("reasoned though asked not to" in w for w in result.warnings)


async def test_a_model_that_refuses_think_is_asked_again_without_it_once(client: httpx.AsyncClient) -> None:
    with FakeOllama() as srv:
        srv.add_model("picky:1b", rejects_think=True)
        backend = OllamaBackend([srv.url], client=client)
        first = await backend.complete(request(model="picky:1b"))
        await backend.complete(request(model="picky:1b"))
    assert first.text and [("think" in r) for r in srv.requests] == [True, False, False]


async def test_a_think_block_in_the_content_is_split_off(fake_ollama: FakeOllama, client: httpx.AsyncClient) -> None:
    fake_ollama.script(['<think>The user wants JSON.</think>\n{"city": "Lisbon"}'])
    result = await OllamaBackend([fake_ollama.url], client=client).complete(request(schema=SCHEMA, max_tokens=64))
    assert result.text == '{"city": "Lisbon"}' and result.thinking_tokens > 0


# --- a server that streams though asked not to -------------------------------------------------


async def test_an_ndjson_answer_is_assembled_and_a_200_error_line_is_an_error(client: httpx.AsyncClient) -> None:
    with FakeOllama(always_stream=True) as srv:
        srv.script(["Lisbon is the capital of Portugal."])
        backend = OllamaBackend([srv.url], client=client)
        result = await backend.complete(request())
        assert result.text == "Lisbon is the capital of Portugal." and result.output_tokens > 0
        assert any("streamed its answer" in w for w in result.warnings)
        srv.fault("midstream_error")
        with pytest.raises(BadResponse) as caught:
            await backend.complete(request())
    assert "mid-answer (HTTP 200, after 1 chunk(s)): an error was encountered" in caught.value.message


# --- OLLAMA_NUM_PARALLEL: slots per host ------------------------------------------------------


async def test_calls_spread_by_each_hosts_slots(client: httpx.AsyncClient) -> None:
    with FakeOllama(num_parallel=3, latency_s=0.2) as big, FakeOllama(latency_s=0.2) as small:
        backend = OllamaBackend([small.url, big.url], slots={big.url: 3}, client=client)
        assert (backend.slots(big.url), backend.slots(small.url)) == (3, 1)
        await asyncio.gather(*(backend.complete(request(f"job {i}")) for i in range(4)))
        assert (len(big.requests), len(small.requests)) == (3, 1) and big.max_active == 3
