"""OpenTelemetry export: a real run's ledger rows become GenAI spans (needs the `otel` extra)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.ledger.store import Ledger
from ollama_dist.run import telemetry
from tests.servers.anthropic import AnthropicServer
from tests.servers.ollama import FakeOllama

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra (opentelemetry-sdk) is not installed")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

runner = CliRunner()


@pytest.fixture
def memory() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def escalated_run(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> Iterator[tuple[Ledger, str]]:
    """A real run of two jobs: one answered locally, one escalated after two invalid local answers."""
    with FakeOllama() as ollama, AnthropicServer(key="k") as claude:
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
        folder = Path("t")
        folder.mkdir()
        for i in range(2):
            (folder / f"in{i}.txt").write_text(f"Our office moved from Lisbon to A, town number {i}.\n")
        (folder / "city.yaml").write_text(
            "name: city\nprompt: Extract the city from this sentence. Reply with JSON only.\n"
            "output: {format: json, schema: {type: object, required: [city], properties: {city: {type: string}}}}\n"
            "inputs: {files: ['in*.txt']}\n")
        ollama.script(lambda body: "no json" if "number 1" in body["messages"][0]["content"] else '{"city": "A"}')
        result = runner.invoke(app, ["run", str(folder), "--json", "--quiet", "--root", "."])
        assert result.exit_code == 0, result.stderr
    ledger = Ledger(isolated_home / "ledger.db")
    yield ledger, json.loads(result.stdout)["run_id"]
    ledger.close()


def test_one_span_per_attempt_with_genai_attributes(escalated_run: tuple[Ledger, str],
                                                    memory: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    ledger, run_id = escalated_run
    provider, exporter = memory
    rows = ledger.attempts(run_id)
    assert telemetry.export_run(ledger.connection, run_id, provider=provider) == len(rows) == 4
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.name == "ollama-dist run"]
    calls = [s for s in spans if s is not root]
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in calls)
    assert root.attributes["ollama_dist.run_id"] == run_id
    by_job: dict[str, list[Any]] = {}
    for span in calls:
        by_job.setdefault(span.attributes["ollama_dist.job_id"], []).append(span)
    for job, spans_of_job in by_job.items():
        mine = [r for r in rows if r["job_id"] == job]
        assert len(spans_of_job) == len(mine)
        for span, row in zip(sorted(spans_of_job, key=lambda s: s.attributes["routing.attempt"]), mine):
            a = span.attributes
            assert a["gen_ai.operation.name"] == "chat" and span.name == f"chat {row['model']}"
            assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == row["model"]
            assert a["gen_ai.usage.input_tokens"] == row["input_tokens"] > 0
            assert a["gen_ai.usage.output_tokens"] == row["output_tokens"] > 0
            assert a["gen_ai.provider.name"] == ("ollama" if row["lane"] == "local" else "anthropic")
            assert a["routing.lane"] == row["lane"] and a["routing.routed_to"] == "local"
            assert a["routing.escalated"] is (row["lane"] == "cloud")
            assert a["routing.outcome"] == row["outcome"] and a["routing.final"] is bool(row["final"])
            assert span.start_time <= span.end_time == int(row["ts"] * 1e9)
    escalated = [s for s in calls if s.attributes["routing.escalated"]]
    assert len(escalated) == 1 and escalated[0].attributes["gen_ai.request.model"] == "claude-haiku-5-5"
    local = [s for s in calls if s.attributes["routing.lane"] == "local"]
    assert {s.attributes["server.address"] for s in local} == {"127.0.0.1"}
    assert sorted(s.attributes["routing.outcome"] for s in local) == ["invalid", "invalid", "ok"]


def test_off_by_default_does_nothing(escalated_run: tuple[Ledger, str]) -> None:
    ledger, run_id = escalated_run
    assert telemetry.export_run(ledger.connection, run_id, env={}) == 0
    assert telemetry.export_run(ledger.connection, run_id, env={"OTEL_TRACES_EXPORTER": "none"}) == 0


def test_console_exporter_from_the_standard_variable(escalated_run: tuple[Ledger, str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ledger, run_id = escalated_run
    count = telemetry.export_run(ledger.connection, run_id, env={"OTEL_TRACES_EXPORTER": "console"})
    assert count == 4
    err = capsys.readouterr().err
    assert err.count('"gen_ai.operation.name": "chat"') == 4 and "ollama-dist run" in err


def test_without_opentelemetry_installed_it_is_a_no_op(escalated_run: tuple[Ledger, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, run_id = escalated_run
    monkeypatch.setattr(telemetry.importlib.util, "find_spec", lambda name: None)
    assert telemetry.export_run(ledger.connection, run_id, env={"OTEL_TRACES_EXPORTER": "console"}) == 0


def row(**kw: Any) -> dict[str, Any]:
    base = dict(run_id="r", session="s", job_id="j", task="t", routed_to="local", lane="local", backend="ollama",
                model="gemma3:270m", host=None, attempt=1, outcome="ok", reason=None, final=1, input_tokens=10,
                output_tokens=2, latency_s=1.5, cost_usd=0.0, ts=100.0)
    base.update(kw)
    return base


@pytest.mark.parametrize(("backend", "provider"), [("ollama", "ollama"), ("claude", "anthropic"),
                                                   ("openai_compat:http://h:8000/v1", "openai"),
                                                   ("embedded", "llama_cpp"), ("ollama+embedded", "ollama"),
                                                   ("claude-batch", "anthropic")],
                         ids=["ollama", "claude", "openai-compat", "embedded", "fallback-chain", "claude-batch"])
def test_provider_names(backend: str, provider: str) -> None:
    assert telemetry.provider_name(backend) == provider


def test_errors_skips_and_cache_hits() -> None:
    error = telemetry.attempt_span(row(outcome="error", reason="timeout", input_tokens=0, output_tokens=0))
    assert error.error == "timeout" and error.attributes["error.type"] == "timeout"
    assert "gen_ai.response.model" not in error.attributes and "gen_ai.usage.input_tokens" not in error.attributes
    assert error.end_ns - error.start_ns == 1_500_000_000
    skipped = telemetry.attempt_span(row(outcome="skipped", reason="breaker_open", latency_s=0.0))
    assert skipped.name == "routing skipped" and "gen_ai.operation.name" not in skipped.attributes
    assert skipped.attributes["routing.reason"] == "breaker_open"
    cloud = telemetry.attempt_span(row(lane="cloud", backend="claude", model="claude-haiku-5-5"))
    assert cloud.attributes["routing.escalated"] is True and cloud.attributes["gen_ai.provider.name"] == "anthropic"
    shadow = telemetry.attempt_span(row(lane="cloud", backend="claude", attempt=2, final=0, reason="shadow"))
    assert shadow.attributes["routing.escalated"] is False and shadow.attributes["routing.shadow"] is True


def test_the_run_is_read_through_the_session_index(escalated_run: tuple[Ledger, str]) -> None:
    ledger, run_id = escalated_run
    seen: list[str] = []
    ledger.connection.set_trace_callback(seen.append)
    try:
        telemetry.run_rows(ledger.connection, run_id)
    finally:
        ledger.connection.set_trace_callback(None)
    sql = seen[-1].replace(f"'{run_id}'", "?")
    plan = " | ".join(r[3] for r in ledger.connection.execute("EXPLAIN QUERY PLAN " + sql, (run_id,)))
    assert "attempts_session" in plan, plan

