"""The fake Ollama server's newer behaviours (Ollama 0.15.5+) and its odd-server modes, over raw HTTP.

VRAM-sized default context, reload on a different num_ctx, thinking models, a server that always
says "stop", one that streams though asked not to (so an error arrives as a 200 NDJSON line), and
routes that are missing or fail.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import ollama
import pytest

from tests.servers.ollama import FakeOllama

pytest_plugins = ["tests.servers.fixtures"]

MODEL = "gemma3:270m"


def chat(url: str, **body: Any) -> httpx.Response:
    body.setdefault("model", MODEL)
    body.setdefault("messages", [{"role": "user", "content": "hello"}])
    body.setdefault("stream", False)
    return httpx.post(f"{url}/api/chat", json=body, timeout=10)


@pytest.mark.parametrize(("vram", "expected"), [(0, 4096), (16, 4096), (23, 32768), (46.9, 32768), (47, 262144)])
def test_default_context_follows_the_vram_tier(vram: float, expected: int) -> None:
    with FakeOllama(vram_gib=vram, context_length=1 << 20) as srv:
        chat(srv.url)
        [loaded] = httpx.get(f"{srv.url}/api/ps").json()["models"]
        assert loaded["context_length"] == expected == srv.default_context(MODEL)


def test_default_context_is_capped_by_the_model_and_configurable() -> None:
    with FakeOllama(vram_gib=48, context_length=32768) as srv:
        chat(srv.url)
        assert srv.loaded == {MODEL: 32768}  # the 256k tier, capped to what the model was trained for
        srv.default_num_ctx = 8192  # as OLLAMA_CONTEXT_LENGTH
        chat(srv.url)
        assert srv.loaded == {MODEL: 8192}


def test_a_different_num_ctx_reloads_the_model(fake_ollama: FakeOllama) -> None:
    first = chat(fake_ollama.url, options={"num_ctx": 8192}).json()
    same = chat(fake_ollama.url, options={"num_ctx": 8192}).json()
    other = chat(fake_ollama.url, options={"num_ctx": 16384}).json()
    assert first["load_duration"] > 0 and "load_duration" not in same  # omitempty: 0 is absent
    assert other["load_duration"] > 0 and fake_ollama.reloads == 1
    assert httpx.get(f"{fake_ollama.url}/api/ps").json()["models"][0]["context_length"] == 16384
    chat(fake_ollama.url)  # no num_ctx: the default (4096), another reload
    assert fake_ollama.reloads == 2 and fake_ollama.loaded == {MODEL: 4096}


def test_a_thinking_model_shows_its_trace_unless_told_not_to(fake_ollama: FakeOllama) -> None:
    fake_ollama.add_model("qwen3:0.6b", thinking=True)
    fake_ollama.script(['{"a": 1}'], model="qwen3:0.6b")
    body = chat(fake_ollama.url, model="qwen3:0.6b").json()
    assert body["message"]["content"] == '{"a": 1}' and body["message"]["thinking"]
    assert body["eval_count"] > 2  # the trace is generated tokens too
    off = chat(fake_ollama.url, model="qwen3:0.6b", think=False).json()
    assert "thinking" not in off["message"]
    assert httpx.get(f"{fake_ollama.url}/api/tags").json()["models"][1]["capabilities"] == ["completion", "thinking"]


def test_the_trace_counts_against_num_predict(fake_ollama: FakeOllama) -> None:
    fake_ollama.add_model("qwen3:0.6b", thinking=True)
    body = chat(fake_ollama.url, model="qwen3:0.6b", options={"num_predict": 5}).json()
    assert (body["done_reason"], body["eval_count"], body["message"]["content"]) == ("length", 5, "")


def test_gpt_oss_ignores_a_boolean_and_non_thinking_models_refuse_think(fake_ollama: FakeOllama) -> None:
    fake_ollama.add_model("gpt-oss:20b", thinking=True, family="gptoss")
    assert chat(fake_ollama.url, model="gpt-oss:20b", think=False).json()["message"]["thinking"]
    assert "thinking" in chat(fake_ollama.url, model="gpt-oss:20b", think="low").json()["message"]
    refused = chat(fake_ollama.url, think=True)
    assert refused.status_code == 400 and refused.json() == {"error": f'"{MODEL}" does not support thinking'}
    assert chat(fake_ollama.url, think=False).status_code == 200  # false is fine on any model
    fake_ollama.add_model("picky:1b", rejects_think=True)
    assert chat(fake_ollama.url, model="picky:1b", think=False).status_code == 400


def test_the_official_client_reads_the_thinking_field(fake_ollama: FakeOllama) -> None:
    fake_ollama.add_model("qwen3:0.6b", thinking=True)
    reply = ollama.Client(host=fake_ollama.url, timeout=10).chat(
        model="qwen3:0.6b", messages=[{"role": "user", "content": "hi"}], think=True)
    assert reply.message.thinking and reply.message.content


def test_a_server_that_always_says_stop() -> None:
    with FakeOllama(always_stop=True) as srv:
        srv.script(["a much longer answer than two tokens"])
        body = chat(srv.url, options={"num_predict": 2}).json()
        assert (body["done_reason"], body["eval_count"], body["message"]["content"]) == ("stop", 2, "a much l")


def test_a_server_that_streams_anyway_sends_a_midstream_error_as_a_200_line() -> None:
    with FakeOllama(always_stream=True) as srv:
        srv.script(["Lisbon is the answer"])
        lines = [json.loads(line) for line in chat(srv.url).text.splitlines()]
        assert "".join(x["message"]["content"] for x in lines) == "Lisbon is the answer" and lines[-1]["done"]
        srv.fault("midstream_error")
        broken = chat(srv.url)
        assert broken.status_code == 200 and broken.headers["content-type"] == "application/x-ndjson"
        *_, last = (json.loads(line) for line in broken.text.splitlines())
        assert last == {"error": "an error was encountered while running the model"}


def test_the_official_client_raises_on_a_midstream_error_line() -> None:
    with FakeOllama() as srv:
        srv.fault("midstream_error")
        stream = ollama.Client(host=srv.url, timeout=10).chat(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
        with pytest.raises(ollama.ResponseError) as caught:
            list(stream)
        assert caught.value.status_code == -1


@pytest.mark.parametrize("status", [404, 401, 503])
def test_a_broken_route_answers_its_status(status: int) -> None:
    with FakeOllama(broken_routes={"/api/show": status, "/api/ps": 404}) as srv:
        show = httpx.post(f"{srv.url}/api/show", json={"model": MODEL})
        assert show.status_code == status
        if status == 404:
            assert show.text == "404 page not found" and show.headers["content-type"] == "text/plain"
        assert httpx.get(f"{srv.url}/api/ps").status_code == 404
        assert httpx.get(f"{srv.url}/api/version").status_code == 200 and chat(srv.url).status_code == 200


def test_num_parallel_requests_run_at_once_and_the_rest_wait() -> None:
    with FakeOllama(num_parallel=3, latency_s=0.2) as srv:
        threads = [threading.Thread(target=chat, args=(srv.url,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert srv.max_active == 3 and len(srv.requests) == 6
