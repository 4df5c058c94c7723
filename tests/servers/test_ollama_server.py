"""The fake Ollama server itself: raw HTTP (and the official `ollama` client) against it."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import ollama
import pytest

from tests.servers.ollama import (
    BUSY_MESSAGE,
    FakeOllama,
    chatty,
    estimate_tokens,
    fenced,
    refused_url,
)

pytest_plugins = ["tests.servers.fixtures"]

MODEL = "gemma3:270m"


def chat(url: str, body: dict[str, Any], timeout: float = 10.0) -> httpx.Response:
    return httpx.post(f"{url}/api/chat", json=body, timeout=timeout)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line]


def wait_until(predicate: Any, what: str) -> None:
    for _ in range(400):
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_health_version_and_unknown_route(fake_ollama: FakeOllama) -> None:
    root = httpx.get(fake_ollama.url)
    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert root.headers["content-type"].startswith("text/plain")
    head = httpx.head(fake_ollama.url)
    assert head.status_code == 200 and head.content == b""
    assert httpx.get(f"{fake_ollama.url}/api/version").json() == {"version": fake_ollama.version}
    assert httpx.get(f"{fake_ollama.url}/api/nope").status_code == 404


def test_tags_lists_models_with_details(fake_ollama: FakeOllama) -> None:
    fake_ollama.add_model("qwen3")
    models = httpx.get(f"{fake_ollama.url}/api/tags").json()["models"]
    assert [m["name"] for m in models] == [MODEL, "qwen3:latest"]
    assert models[0]["details"]["quantization_level"] == "Q4_K_M"
    assert models[0]["size"] > 0 and len(models[0]["digest"]) == 64


def test_chat_streams_ndjson_by_default(fake_ollama: FakeOllama) -> None:
    response = chat(fake_ollama.url, {"model": MODEL, "messages": [user("hi")]})
    assert response.headers["content-type"] == "application/x-ndjson"
    chunks = ndjson(response)
    assert len(chunks) > 2
    assert all(c["done"] is False and c["message"]["role"] == "assistant" for c in chunks[:-1])
    final = chunks[-1]
    assert final["done"] is True and final["done_reason"] == "stop" and final["message"]["content"] == ""
    assert final["prompt_eval_count"] == estimate_tokens("hi") + 4
    assert final["eval_count"] > 0 and final["total_duration"] > 0
    assert "".join(c["message"]["content"] for c in chunks) == "This is a fake answer from the test server."


def test_stream_false_gives_one_object(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(["Lisbon"])
    response = chat(fake_ollama.url, {"model": MODEL, "messages": [user("hi")], "stream": False})
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["message"] == {"role": "assistant", "content": "Lisbon"}
    assert body["done"] is True and body["done_reason"] == "stop"
    assert body["created_at"].endswith("Z")


def test_model_required_and_unknown_model(fake_ollama: FakeOllama) -> None:
    missing = chat(fake_ollama.url, {"messages": [user("hi")]})
    assert (missing.status_code, missing.json()) == (400, {"error": "model is required"})
    unknown = chat(fake_ollama.url, {"model": "nope", "messages": [user("hi")], "stream": False})
    assert (unknown.status_code, unknown.json()) == (404, {"error": "model 'nope' not found"})
    show = httpx.post(f"{fake_ollama.url}/api/show", json={"model": "nope"})
    assert (show.status_code, show.json()) == (404, {"error": "model 'nope' not found"})


def test_show_reports_context_length_and_capabilities(fake_ollama: FakeOllama) -> None:
    body = httpx.post(f"{fake_ollama.url}/api/show", json={"model": MODEL}).json()
    assert body["model_info"]["gemma3.context_length"] == 32768
    assert body["capabilities"] == ["completion"]
    assert body["details"]["family"] == "gemma3"


def test_load_then_unload_shows_in_ps(fake_ollama: FakeOllama) -> None:
    ps_url = f"{fake_ollama.url}/api/ps"
    assert httpx.get(ps_url).json() == {"models": []}
    load = chat(fake_ollama.url, {"model": MODEL, "messages": [], "options": {"num_ctx": 8192}})
    assert load.json()["done_reason"] == "load"
    assert "prompt_eval_count" not in load.json()  # zero metrics are omitted
    [loaded] = httpx.get(ps_url).json()["models"]
    assert loaded["context_length"] == 8192 and loaded["expires_at"].endswith("Z") and "size_vram" in loaded
    unload = chat(fake_ollama.url, {"model": MODEL, "keep_alive": 0})
    assert unload.json()["done_reason"] == "unload"
    assert httpx.get(ps_url).json() == {"models": []}


def test_a_model_is_loaded_after_answering_with_its_last_num_ctx(fake_ollama: FakeOllama) -> None:
    chat(fake_ollama.url, {"model": MODEL, "messages": [user("a")], "stream": False})
    assert fake_ollama.loaded == {MODEL: 4096}
    chat(fake_ollama.url, {"model": MODEL, "messages": [user("a")], "stream": False, "options": {"num_ctx": 16384}})
    assert fake_ollama.loaded == {MODEL: 16384}
    chat(fake_ollama.url, {"model": MODEL, "messages": [user("a")], "stream": False, "keep_alive": -1})
    assert httpx.get(f"{fake_ollama.url}/api/ps").json()["models"][0]["expires_at"].startswith("2318")


def test_keep_alive_without_unit_is_a_bad_request(fake_ollama: FakeOllama) -> None:
    response = chat(fake_ollama.url, {"model": MODEL, "messages": [user("a")], "keep_alive": "3600"})
    assert response.status_code == 400 and "missing unit" in response.json()["error"]


def test_long_prompt_is_silently_truncated_to_the_default_context(fake_ollama: FakeOllama) -> None:
    text = "word " * 4800  # 24,000 chars: 6,000 fake tokens
    body = chat(fake_ollama.url, {"model": MODEL, "messages": [user(text)], "stream": False}).json()
    assert body["prompt_eval_count"] == 4096
    roomy = {"model": MODEL, "messages": [user(text)], "stream": False, "options": {"num_ctx": 8192}}
    assert chat(fake_ollama.url, roomy).json()["prompt_eval_count"] == 6000 + 4


def test_truncation_drops_old_messages_but_keeps_system_and_latest(fake_ollama: FakeOllama) -> None:
    big = "x" * 4000  # 1,000 tokens + 4
    messages = [
        {"role": "system", "content": "s" * 400},  # 104
        user(big),
        {"role": "assistant", "content": big},
        user(big),
        {"role": "assistant", "content": big},
        user("y" * 400),  # 104
    ]
    body = {"model": MODEL, "messages": messages, "stream": False, "options": {"num_ctx": 2500}}
    # system + the two newest big messages + latest = 104 + 2 * 1004 + 104
    assert chat(fake_ollama.url, body).json()["prompt_eval_count"] == 104 + 2 * 1004 + 104


def test_num_predict_caps_the_answer_with_done_reason_length(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(["a long answer that goes on and on and on"])
    body = {"model": MODEL, "messages": [user("a")], "stream": False, "options": {"num_predict": 2}}
    response = chat(fake_ollama.url, body).json()
    assert response["done_reason"] == "length" and response["eval_count"] == 2
    assert response["message"]["content"] == "a long a"


def test_generate_endpoint(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(["42"])
    body = {"model": MODEL, "prompt": "what?", "system": "be brief", "stream": False}
    response = httpx.post(f"{fake_ollama.url}/api/generate", json=body).json()
    assert response["response"] == "42" and response["done_reason"] == "stop" and response["context"]
    streamed = ndjson(httpx.post(f"{fake_ollama.url}/api/generate", json={"model": MODEL, "prompt": "x"}))
    assert streamed[-1]["done"] is True and streamed[-1]["response"] == ""
    load = httpx.post(f"{fake_ollama.url}/api/generate", json={"model": MODEL}).json()
    assert load["done_reason"] == "load"


def test_format_schema_gets_a_matching_default_answer(fake_ollama: FakeOllama) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "n": {"type": "integer"}, "tag": {"enum": ["a", "b"]}},
    }
    body = {"model": MODEL, "messages": [user("a")], "stream": False, "format": schema}
    assert json.loads(chat(fake_ollama.url, body).json()["message"]["content"]) == {"city": "x", "n": 0, "tag": "a"}
    body["format"] = "json"
    assert json.loads(chat(fake_ollama.url, body).json()["message"]["content"]) == {"answer": "ok"}


def test_scripts_are_consumed_in_order_per_model_then_default(fake_ollama: FakeOllama) -> None:
    fake_ollama.add_model("other")
    fake_ollama.script(["one", "two"], model=MODEL)
    fake_ollama.script(lambda body: f"echo {body['messages'][-1]['content']}", model="other")

    def ask(model: str, text: str) -> str:
        body = {"model": model, "messages": [user(text)], "stream": False}
        return str(chat(fake_ollama.url, body).json()["message"]["content"])

    assert [ask(MODEL, "q"), ask("other", "hey"), ask(MODEL, "q")] == ["one", "echo hey", "two"]
    assert ask(MODEL, "q") == "This is a fake answer from the test server."
    assert [r["messages"][-1]["content"] for r in fake_ollama.requests] == ["q", "hey", "q", "q"]


def test_answer_helpers_shape_text() -> None:
    assert fenced({"a": 1}).startswith("```json\n") and fenced({"a": 1}).endswith("\n```")
    assert '{"a": 1}' in chatty({"a": 1}) and not chatty({"a": 1}).startswith("{")


def test_queue_full_answers_503_with_the_exact_body() -> None:
    with FakeOllama(max_queue=0) as srv:
        srv.fault("stall", seconds=30)
        first = threading.Thread(target=lambda: _quietly(lambda: chat(srv.url, {"model": MODEL, "messages": [user("a")]}, 30)))
        first.start()
        wait_until(lambda: srv.max_active == 1, "the first request to hold the only slot")
        busy = chat(srv.url, {"model": MODEL, "messages": [user("b")], "stream": False})
        assert busy.status_code == 503
        assert busy.text == json.dumps({"error": BUSY_MESSAGE})
        assert "again.  maximum" in busy.text  # two spaces, as the real server
        srv.stop()  # releases the stalled request
        first.join(timeout=10)


def test_num_parallel_bounds_concurrent_generations() -> None:
    with FakeOllama(num_parallel=2, latency_s=0.05) as srv:
        threads = [
            threading.Thread(target=chat, args=(srv.url, {"model": MODEL, "messages": [user("a")], "stream": False}))
            for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert srv.max_active == 2 and len(srv.requests) == 6


def test_faults(fake_ollama: FakeOllama) -> None:
    body = {"model": MODEL, "messages": [user("a")], "stream": False}
    fake_ollama.fault("http_500")
    crashed = chat(fake_ollama.url, body)
    assert crashed.status_code == 500 and "llama runner" in crashed.json()["error"]
    fake_ollama.fault("not_json")
    html = chat(fake_ollama.url, body)
    assert html.status_code == 200 and html.text.startswith("<html>")
    fake_ollama.fault("busy")
    assert chat(fake_ollama.url, body).status_code == 503
    fake_ollama.fault("disconnect")
    with pytest.raises(httpx.RemoteProtocolError):
        chat(fake_ollama.url, body)
    assert chat(fake_ollama.url, body).status_code == 200  # each fault fires once


def test_midstream_error_after_a_200(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault("midstream_error", times=2)
    streamed = chat(fake_ollama.url, {"model": MODEL, "messages": [user("a")]})
    assert streamed.status_code == 200
    lines = ndjson(streamed)
    assert lines[0]["done"] is False and lines[-1] == {"error": "an error was encountered while running the model"}
    unstreamed = chat(fake_ollama.url, {"model": MODEL, "messages": [user("a")], "stream": False})
    assert unstreamed.status_code == 500


def test_stall_outlasts_a_client_timeout(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault("stall", seconds=30)
    with pytest.raises(httpx.ReadTimeout):
        chat(fake_ollama.url, {"model": MODEL, "messages": [user("a")], "stream": False}, timeout=0.3)
    # the stalled slot is freed when the client hangs up
    assert chat(fake_ollama.url, {"model": MODEL, "messages": [user("a")], "stream": False}).status_code == 200


def test_stopped_server_refuses_connections() -> None:
    srv = FakeOllama().start()
    url = srv.url
    with httpx.Client() as client:
        assert client.get(url).status_code == 200  # a pooled keep-alive connection
        srv.stop()
        with pytest.raises(httpx.ConnectError):
            client.get(url)
    with pytest.raises(httpx.ConnectError):
        httpx.get(refused_url())


def test_openai_compatible_endpoint(fake_ollama: FakeOllama) -> None:
    url = f"{fake_ollama.url}/v1/chat/completions"
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    body = {
        "model": MODEL,
        "messages": [user("where?")],
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    }
    response = httpx.post(url, json=body).json()  # stream defaults to false here
    assert response["object"] == "chat.completion" and response["id"].startswith("chatcmpl-")
    assert json.loads(response["choices"][0]["message"]["content"]) == {"city": "x"}
    assert response["choices"][0]["finish_reason"] == "stop"
    usage = response["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    missing = httpx.post(url, json={"model": "nope", "messages": [user("a")]})
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"message": "model 'nope' not found", "type": "not_found_error", "param": None, "code": None}
    }
    fake_ollama.fault("busy")
    busy = httpx.post(url, json={"model": MODEL, "messages": [user("a")]})
    assert busy.status_code == 503 and busy.json()["error"]["type"] == "api_error"


def test_openai_streaming_is_server_sent_events(fake_ollama: FakeOllama) -> None:
    body = {"model": MODEL, "messages": [user("a")], "stream": True, "stream_options": {"include_usage": True}}
    response = httpx.post(f"{fake_ollama.url}/v1/chat/completions", json=body)
    assert response.headers["content-type"] == "text/event-stream"
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "This is a fake answer from the test server."


async def test_the_official_ollama_client_understands_the_fake(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(["hello", "streamed answer here"])
    client = ollama.AsyncClient(host=fake_ollama.url, timeout=10)
    reply = await client.chat(model=MODEL, messages=[user("hi")], options={"num_ctx": 2048})
    assert reply.message.content == "hello" and reply.done_reason == "stop"
    assert fake_ollama.requests[-1]["stream"] is False
    pieces = [part.message.content async for part in await client.chat(model=MODEL, messages=[user("hi")], stream=True)]
    assert "".join(p or "" for p in pieces) == "streamed answer here"
    with pytest.raises(ollama.ResponseError) as missing:
        await client.chat(model="nope", messages=[user("hi")])
    assert missing.value.status_code == 404
    fake_ollama.fault("midstream_error")
    with pytest.raises(ollama.ResponseError) as broken:
        async for _ in await client.chat(model=MODEL, messages=[user("hi")], stream=True):
            pass
    assert broken.value.status_code == -1
    assert [m.model for m in (await client.ps()).models] == [MODEL]
    info = (await client.show(MODEL)).modelinfo
    assert info is not None and info["gemma3.context_length"] == 32768


def _quietly(call: Any) -> None:
    try:
        call()
    except httpx.HTTPError:
        pass
