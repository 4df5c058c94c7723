"""`cloud.backend: claude-code`: cloud work through `claude -p --output-format json`.

Against tests/fake_claude/claude (first on PATH), which answers and fails as the real
CLI does; and, where the real `claude` is installed, the real CLI against the loopback
Anthropic server (ANTHROPIC_BASE_URL), which also checks that every flag the backend
passes is one the real CLI takes.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ollama_dist import api
from ollama_dist.backends.base import Message, Request
from ollama_dist.backends.claude_code import ClaudeCodeBackend, command, prompt_text
from ollama_dist.cli import app
from ollama_dist.config import load_settings
from ollama_dist.errors import (
    AuthError,
    BadResponse,
    BudgetExceeded,
    ConfigError,
    Overloaded,
    RateLimited,
    Timeout,
    Unreachable,
)
from tests.servers.anthropic import AnthropicServer
from tests.servers.ollama import FakeOllama

FAKE = Path(__file__).resolve().parents[1] / "fake_claude"
REAL_CLAUDE = shutil.which("claude", path=os.environ.get("PATH", "").replace(str(FAKE), ""))
SCHEMA = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
REVIEW = textwrap.dedent("""\
    name: review
    kind: reasoning
    system: You are a careful reviewer.
    prompt: Explain why this design might fail under load, weighing the trade-offs.
    inputs: {text: "A single SQLite file shared by twenty writers over NFS."}
    """)


@pytest.fixture
def fake_claude(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The fake first on PATH, no API key, the backend chosen by default; returns its call log."""
    monkeypatch.setenv("PATH", f"{FAKE}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("OLLAMA_DIST_CLOUD_BACKEND")
    log = tmp_path / "claude-calls.jsonl"
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(log))
    return log


@pytest.fixture
def ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    with FakeOllama(models=("gemma3:270m",)) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
        yield server


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_default_backend_is_api_with_a_key_else_claude_code_on_the_path(
        fake_claude: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert api.cloud_backend(load_settings()) == "claude-code"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert api.cloud_backend(load_settings()) == "api"
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    assert api.cloud_backend(load_settings(), {"PATH": "/nonexistent"}) == "api"
    monkeypatch.setenv("OLLAMA_DIST_CLOUD_BACKEND", "api")
    assert api.cloud_backend(load_settings()) == "api"
    (isolated_home / "config.yaml").write_text("cloud: {backend: claude-code}\n")
    monkeypatch.delenv("OLLAMA_DIST_CLOUD_BACKEND")
    assert api.cloud_backend(load_settings()) == "claude-code"
    assert load_settings().source_of("cloud.backend") == f"file:{isolated_home / 'config.yaml'}"


def test_a_claude_that_is_not_logged_in_is_not_taken_for_the_cloud(
        fake_claude: Path, ollama: FakeOllama, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`claude auth status` says loggedIn false: the default stays `api`, and the run's note says
    why cloud jobs failed (no key, and the `claude` found is not logged in)."""
    monkeypatch.setenv("FAKE_CLAUDE_AUTH", "logged_out")
    assert api.cloud_backend(load_settings()) == "api"
    Path("review.yaml").write_text(REVIEW)
    result = CliRunner().invoke(app, ["run", "--json", "-q", "review.yaml"])
    assert result.exit_code == 1, result.output
    assert calls(fake_claude) == []  # `claude -p` never asked (the log records answers, not `auth status`)
    notes = json.loads(result.stdout)["notes"]
    assert any("ANTHROPIC_API_KEY" in n and "not logged in" in n for n in notes), notes
    monkeypatch.setenv("FAKE_CLAUDE_AUTH", "old")  # a CLI that cannot say: taken, as before
    assert api.cloud_backend(load_settings()) == "claude-code"


def test_a_project_file_cannot_choose_the_cloud_backend(fake_claude: Path) -> None:
    """`claude-code` spends the user's own subscription: a cloned repository must not switch it on."""
    Path("ollama-dist.yaml").write_text("cloud: {backend: claude-code}\n")
    with pytest.raises(ConfigError, match="not allowed in a project file") as err:
        load_settings()
    assert err.value.field == "cloud.backend" and err.value.line == 1


def test_a_cloud_job_runs_through_claude_code_and_the_ledger_names_it(
        fake_claude: Path, ollama: FakeOllama, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_ANSWER", "It will lock up: NFS locking is unreliable.")
    Path("review.yaml").write_text(REVIEW)
    result = CliRunner().invoke(app, ["run", "--json", "-q", "review.yaml"])
    assert result.exit_code == 0, result.output
    (job,) = json.loads(result.stdout)["jobs"]
    assert job["status"] == "ok" and job["value"] == "It will lock up: NFS locking is unreliable."
    assert job["actual_model"] == "claude-sonnet-5-5" and job["cost_usd"] > 0
    (call,) = calls(fake_claude)
    argv = call["argv"]
    assert flag(argv, "--model") == "claude-sonnet-5-5" and flag(argv, "--output-format") == "json"
    assert flag(argv, "--system-prompt") == "You are a careful reviewer." and flag(argv, "--tools") == ""
    assert flag(argv, "--max-turns") == "1" and "--json-schema" not in argv
    assert "twenty writers over NFS" in call["stdin"]
    row = sqlite3.connect(isolated_home / "ledger.db").execute(
        "SELECT backend, lane, model, outcome, reported_cost_usd, input_tokens, output_tokens FROM attempts").fetchone()
    assert row[:4] == ("claude-code", "cloud", "claude-sonnet-5-5", "ok") and row[4] == 0.0123
    assert row[5] > 0 and row[6] > 0


def test_an_invalid_local_answer_escalates_through_claude_code_with_the_schema(
        fake_claude: Path, ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_ANSWER", '{"city": "Porto"}')
    Path("city.yaml").write_text(textwrap.dedent(f"""\
        name: city
        prompt: Extract the city from this sentence. Reply with JSON only.
        inputs: {{text: "We moved to Porto."}}
        output: {{format: json, schema: {json.dumps(SCHEMA)}}}
        """))
    ollama.script(["no json", "still none"])
    result = CliRunner().invoke(app, ["run", "--json", "-q", "city.yaml"])
    assert result.exit_code == 0, result.output
    (job,) = json.loads(result.stdout)["jobs"]
    assert job["escalated"] and job["value"] == {"city": "Porto"} and job["actual_model"] == "claude-haiku-5-5"
    (call,) = calls(fake_claude)
    assert json.loads(flag(call["argv"], "--json-schema") or "") == SCHEMA
    assert flag(call["argv"], "--effort") == "low"


@pytest.mark.parametrize(("mode", "reason"), [
    ("not_logged_in", "auth"), ("usage_limit", "rate_limited"), ("rate_limited", "rate_limited"),
    ("overloaded", "overloaded"), ("budget", "budget"), ("max_turns", "bad_response"), ("crash", "bad_response"),
])
def test_claude_code_failures_are_typed_and_recorded(
        mode: str, reason: str, fake_claude: Path, ollama: FakeOllama, isolated_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_MODE", mode)
    Path("review.yaml").write_text(REVIEW)
    result = CliRunner().invoke(app, ["run", "--json", "-q", "review.yaml"])
    assert result.exit_code == 1, result.output
    (job,) = json.loads(result.stdout)["jobs"]
    assert job["status"] == "failed" and f": {reason}: " in job["reason"]
    rows = sqlite3.connect(isolated_home / "ledger.db").execute("SELECT backend, outcome, reason FROM attempts")
    assert list(rows) == [("claude-code", "error", reason)]
    if mode == "not_logged_in":
        assert "/login" in result.stderr


def request(**kw: Any) -> Request:
    base: dict[str, Any] = {"model": "claude-haiku-5-5", "messages": (Message(role="user", content="hi"),)}
    return Request(**(base | kw))


async def test_errors_raised_by_the_backend(fake_claude: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for mode, error in (("not_logged_in", AuthError), ("usage_limit", RateLimited), ("budget", BudgetExceeded),
                        ("overloaded", Overloaded), ("crash", BadResponse)):
        monkeypatch.setenv("FAKE_CLAUDE_MODE", mode)
        with pytest.raises(error) as caught:
            await ClaudeCodeBackend().complete(request())
        if mode == "usage_limit":
            assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 600
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "hang")
    with pytest.raises(Timeout, match="within 0.5 s"):
        await ClaudeCodeBackend().complete(request(timeout_s=0.5))
    with pytest.raises(Unreachable, match="cannot run"):
        await ClaudeCodeBackend(executable=str(Path("no-such-claude").resolve())).complete(request())


def test_the_conversation_becomes_one_prompt_and_flags_follow_the_request() -> None:
    req = request(messages=(Message(role="user", content="Q"), Message(role="assistant", content="bad"),
                            Message(role="user", content="fix it")), schema=SCHEMA, effort="low")
    text = prompt_text(req)
    assert text.index("Q") < text.index("bad") < text.index("fix it")
    argv = command(req, max_budget_usd=0.5)
    assert flag(argv, "--max-budget-usd") == "0.5" and flag(argv, "--effort") == "low"
    assert flag(argv, "--system-prompt")  # never Claude Code's own 26k-character prompt


@pytest.mark.skipif(REAL_CLAUDE is None, reason="the real `claude` CLI is not installed "
                    "(npm install -g @anthropic-ai/claude-code)")
async def test_the_real_claude_cli_against_the_loopback_anthropic_server(tmp_path: Path) -> None:
    assert REAL_CLAUDE is not None
    (tmp_path / "cc-home").mkdir()
    with AnthropicServer(key="sk-ant-test-loopback") as server:
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "cc-home"), "ANTHROPIC_BASE_URL": server.url,
               "ANTHROPIC_API_KEY": "sk-ant-test-loopback", "DISABLE_AUTOUPDATER": "1",
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
        server.answer("*", lambda body: '{"city": "Lisbon"}' if body.get("tools") else "Lisbon is the city.")
        backend = ClaudeCodeBackend(executable=REAL_CLAUDE, env=env, max_budget_usd=5)
        text = await backend.complete(request(system="Answer briefly.", timeout_s=120))
        assert text.text == "Lisbon is the city." and text.backend == "claude-code"
        assert text.model == "claude-haiku-5-5" and text.input_tokens > 0 and text.reported_cost_usd
        structured = await backend.complete(request(schema=SCHEMA, timeout_s=120))
        assert json.loads(structured.text) == {"city": "Lisbon"}
        sent = server.calls("/v1/messages")
        assert sent and all(r.headers.get("user-agent", "").startswith("claude-cli/") for r in sent)
        assert any(r.body.get("system") and "Answer briefly." in json.dumps(r.body["system"]) for r in sent)
        # a refused key: Claude Code retries a 401 with backoff unless told not to
        refused = ClaudeCodeBackend(executable=REAL_CLAUDE, env=env | {
            "ANTHROPIC_API_KEY": "sk-ant-test-wrong", "CLAUDE_CODE_MAX_RETRIES": "0"})
        with pytest.raises(AuthError, match="Invalid API key"):
            await refused.complete(request(timeout_s=120))
