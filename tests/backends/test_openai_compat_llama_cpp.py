"""The OpenAI-compatible backend against the real llama-cpp-python server (`python -m llama_cpp.server`).

That server takes a schema only as `{"type": "json_object", "schema": ...}` and answers 500 to
OpenAI's `json_schema` form: the backend learns this from the first schema task and keeps it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jsonschema
import pytest
from typer.testing import CliRunner

from ollama_dist.backends.base import Message, Request
from ollama_dist.backends.openai_compat import OpenAICompatBackend
from ollama_dist.cli import app
from tests.servers.anthropic import AnthropicServer
from tests.servers.anthropic.examples import cloud_responder

if TYPE_CHECKING:  # the fixture module is loaded as a plugin, not imported (its fixture would be doubled)
    from tests.servers.llama_cpp_server import LlamaCppServer

pytestmark = pytest.mark.real_model
pytest_plugins = ["tests.servers.llama_cpp_server"]

REPO = Path(__file__).resolve().parents[2]
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PROMPT = 'Extract the city from this sentence as JSON {"city": ...}.\nSentence: Maria flew to Lisbon last week.'


def request(text: str, **fields: Any) -> Request:
    return Request(model="gemma3:270m", messages=(Message(role="user", content=text),), **fields)


class Recorder:
    """The bodies an httpx client sent and the statuses it got back, in order."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.statuses: list[int] = []

    async def on_request(self, req: httpx.Request) -> None:
        self.sent.append(json.loads(req.content))

    async def on_response(self, resp: httpx.Response) -> None:
        self.statuses.append(resp.status_code)


async def test_the_server_rejects_json_schema_as_the_backend_assumes(llama_cpp_server: LlamaCppServer) -> None:
    """The fact the fallback rests on, checked on the server itself: 500 naming response_format."""
    body = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": CITY_SCHEMA}}}
    async with httpx.AsyncClient(trust_env=False) as http:
        answer = await http.post(f"{llama_cpp_server.url}/v1/chat/completions", json=body, timeout=30)
    assert answer.status_code == 500 and "response_format" in answer.text


async def test_schema_tasks_are_answered_after_one_fallback(llama_cpp_server: LlamaCppServer) -> None:
    recorder = Recorder()
    hooks = {"request": [recorder.on_request], "response": [recorder.on_response]}
    async with httpx.AsyncClient(trust_env=False, event_hooks=hooks) as http:
        backend = OpenAICompatBackend(llama_cpp_server.url, client=http)
        first = await backend.complete(request(PROMPT, schema=CITY_SCHEMA, max_tokens=32, timeout_s=60))
        second = await backend.complete(request(PROMPT.replace("Lisbon", "Osaka"), schema=CITY_SCHEMA,
                                                max_tokens=32, timeout_s=60))
    for result in (first, second):
        jsonschema.validate(json.loads(result.text), CITY_SCHEMA)
        assert result.input_tokens > 0 and result.output_tokens > 0 and result.stop_reason == "stop"
    assert "Lisbon" in json.loads(first.text)["city"]
    assert [b["response_format"]["type"] for b in recorder.sent] == ["json_schema", "json_object", "json_object"]
    assert recorder.statuses == [500, 200, 200]
    assert backend.schema_form == "json_object"
    assert len(first.warnings) == 1 and "json_schema" in first.warnings[0] and not second.warnings


async def test_the_server_drops_system_messages_so_the_backend_folds_them(llama_cpp_server: LlamaCppServer) -> None:
    """The server's gemma format reads no system message (sent as one, it adds no token to the
    prompt); the backend folds a Gemma model's system prompt into the first user turn, so it
    reaches the model."""
    body = {"model": "gemma3:270m", "max_tokens": 1, "stream": False,
            "messages": [{"role": "user", "content": "Maria flew to Lisbon."}]}
    system = {"role": "system", "content": "Reply in French, in JSON only."}
    async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
        url = llama_cpp_server.url + "/v1/chat/completions"
        bare = (await http.post(url, json=body)).json()["usage"]["prompt_tokens"]
        dropped = (await http.post(url, json=body | {"messages": [system, *body["messages"]]})).json()
        backend = OpenAICompatBackend(llama_cpp_server.url, client=http)
        told = await backend.complete(request("Maria flew to Lisbon.", system=system["content"],
                                              max_tokens=1, timeout_s=60))
    assert dropped["usage"]["prompt_tokens"] == bare
    assert told.input_tokens > bare


async def test_an_answer_that_uses_all_max_tokens_is_cut_off(llama_cpp_server: LlamaCppServer) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        result = await OpenAICompatBackend(llama_cpp_server.url, client=http).complete(
            request("Write a long story about a dragon.", max_tokens=5, timeout_s=60))
    assert result.output_tokens == 5 and result.stop_reason == "length"


def test_run_answers_schema_jobs_locally_through_the_server(llama_cpp_server: LlamaCppServer, tmp_path: Path,
                                                            isolated_home: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`ollama-dist run` with only the llama.cpp server as its local tier: the contact extractions
    (three jobs) are sent with the schema form the server takes (every request is answered, none
    fails on its form), each answer is checked, and every job ends ok with the signature's values."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "tasks/examples/signatures", root / "signatures")
    shutil.copy(REPO / "tasks/examples/extract-contacts.yaml", root / "extract-contacts.yaml")
    (root / "ollama-dist.yaml").write_text(textwrap.dedent(f"""\
        ollama: {{hosts: [], openai_compat: ["{llama_cpp_server.url}"], embedded: false}}
        breaker: {{p95_threshold_s: 100000}}
        """))
    monkeypatch.chdir(root)
    with AnthropicServer(key="test-key") as claude:
        claude.answer("*", cloud_responder())  # an escalated job gets Claude's right answer
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        result = CliRunner().invoke(app, ["run", "extract-contacts.yaml", "--root", str(root), "--json", "--quiet"])
    assert result.exit_code == 0, result.stdout[-3000:] + result.stderr[-2000:]
    jobs = json.loads(result.stdout)["jobs"]
    assert len(jobs) == 3 and all(j["status"] == "ok" for j in jobs)
    with sqlite3.connect(isolated_home / "ledger.db") as db:
        local_attempts = db.execute("SELECT backend, outcome, reason FROM attempts WHERE lane = 'local'").fetchall()
    assert local_attempts and all(backend.startswith("openai_compat:") for backend, _, _ in local_attempts)
    # no attempt failed on the request form: the server answered each one (validly or not)
    assert all(outcome in ("ok", "invalid") for _, outcome, _ in local_attempts), local_attempts
    # the 270M model often invents names and addresses: those answers must be caught (not in the
    # input) and escalated, never written as ok. Whoever answered, each written value is the one
    # the signature holds.
    for job in jobs:
        value = json.loads(Path(job["output"]).read_text())
        signature = (root / "signatures" / f"{Path(job['output']).stem}.txt").read_text()
        assert value["email"] in signature and value["name"] in signature, (job["tries"], value)
    answered_locally = [j for j in jobs if not j["escalated"]]
    print(f"\n{len(answered_locally)} of {len(jobs)} contact extractions answered by llama_cpp.server; "
          f"local attempts: {[(outcome, reason) for _, outcome, reason in local_attempts]}")
