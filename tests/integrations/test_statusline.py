"""`ollama-dist statusline`: one short line from Claude Code's status-line JSON; the plan usage recorded."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.config import load_settings
from ollama_dist.integrations.claude_code import statusline
from ollama_dist.ledger.store import Attempt, Ledger
from tests.servers.ollama import FakeOllama, refused_url

runner = CliRunner()


def payload(session: str = "cc-1", **limits: dict[str, float]) -> str:
    data: dict[str, object] = {"session_id": session, "cwd": str(Path.cwd()), "model": {"id": "claude-opus-4-8"},
                               "workspace": {"current_dir": str(Path.cwd()), "project_dir": str(Path.cwd())},
                               "cost": {"total_cost_usd": 0.12}, "version": "2.1.197"}
    if limits:
        data["rate_limits"] = limits
    return json.dumps(data)


def line(stdin: str) -> str:
    result = runner.invoke(app, ["statusline"], input=stdin)
    assert result.exit_code == 0, result.output
    (text,) = result.stdout.splitlines()
    return text


@pytest.fixture
def ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    with FakeOllama(models=("gemma3:270m",)) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        yield server


def record(home: Path, session: str, *, lane: str, outcome: str, job: str, tokens: int = 0) -> None:
    ledger = Ledger(home / "ledger.db")
    ledger.record(Attempt(run_id="r1", session=session, job_id=job, task="t", task_fingerprint="f", input_hash=job,
                          models_key="m", routed_to="local", lane=lane, backend="ollama", model="gemma3:270m",
                          attempt=1, outcome=outcome, final=True, input_tokens=tokens, output_tokens=tokens // 2))
    ledger.close()


def test_the_line_gives_this_sessions_local_jobs_tokens_and_the_tier(ollama: FakeOllama, isolated_home: Path) -> None:
    assert line(payload()) == "ollama-dist · no jobs yet · local up (ollama)"
    record(isolated_home, "cc-1", lane="local", outcome="ok", job="a", tokens=1000)
    record(isolated_home, "cc-1", lane="local", outcome="ok", job="b", tokens=600)
    record(isolated_home, "cc-1", lane="cloud", outcome="handed_back", job="c", tokens=5000)
    record(isolated_home, "cc-other", lane="local", outcome="ok", job="d", tokens=9000)
    assert line(payload()) == "ollama-dist · 2 local · 2.4k tokens saved · local up (ollama)"
    assert line(payload("cc-other")) == "ollama-dist · 1 local · 13.5k tokens saved · local up (ollama)"
    assert ollama.requests == []  # the probe asks /api/version, never a model


def test_rate_limits_are_recorded_once_per_reading(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", refused_url())
    resets = time.time() + 3600
    five, seven = {"used_percentage": 42.5, "resets_at": resets}, {"used_percentage": 13, "resets_at": resets + 9e5}
    line(payload(five_hour=five, seven_day=seven))
    line(payload(five_hour=five, seven_day=seven))  # the same reading again: not a new row
    line(payload(five_hour={**five, "used_percentage": 44.0}))  # the weekly window missing this time
    line(payload(five_hour={"used_percentage": "lots"}))  # an odd value is left out, nothing recorded
    rows = sqlite3.connect(isolated_home / "ledger.db").execute(
        "SELECT session, five_hour_pct, five_hour_resets_at, seven_day_pct, seven_day_resets_at FROM plan_usage "
        "ORDER BY id").fetchall()
    assert rows == [("cc-1", 42.5, resets, 13.0, resets + 9e5), ("cc-1", 44.0, resets, None, None)]


def test_no_rate_limits_and_no_ledger_writes_nothing(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", refused_url())
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    assert line(payload()) == "ollama-dist · no jobs yet · local down"
    assert not (isolated_home / "ledger.db").exists()


def test_past_a_budget_threshold_the_line_says_local_first(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", refused_url())
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\nbudget: {five_hour_thresholds: [50, 75]}\n")
    resets = time.time() + 3600
    assert line(payload(five_hour={"used_percentage": 30, "resets_at": resets})).endswith("local down")
    assert line(payload(five_hour={"used_percentage": 81, "resets_at": resets})).endswith(
        "local down · 5h 81% local-first")


@pytest.mark.parametrize("stdin", ["", "not json", "[1, 2]", json.dumps({"session_id": 7, "rate_limits": "x"})],
                         ids=["empty", "not-json", "a-list", "odd-types"])
def test_odd_input_still_gives_a_line(stdin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", refused_url())
    assert line(stdin).startswith("ollama-dist · no jobs yet · local ")


def test_a_broken_config_is_a_short_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("ollama-dist.yaml").write_text("budget: {five_hour_thresholds: [90, 50]}\n")
    text = line(payload())
    assert text.startswith("ollama-dist · ") and "ollama-dist.yaml:1" in text and "Traceback" not in text


def test_the_probe_is_cached_for_its_ttl(isolated_home: Path) -> None:
    calls: list[str] = []

    def probe(url: str, timeout_s: float) -> bool:
        calls.append(url)
        return True

    settings = load_settings()
    now = 1000.0
    assert statusline.local_tier(settings, now, probe) == statusline.Tier(True, "ollama")
    assert statusline.local_tier(settings, now + statusline.PROBE_TTL_S - 1, probe).up
    assert len(calls) == 1
    statusline.local_tier(settings, now + statusline.PROBE_TTL_S + 1, probe)
    assert len(calls) == 2


def test_the_probe_stops_within_its_budget_however_many_hosts() -> None:
    settings = load_settings().model_copy(update={"ollama": load_settings().ollama.model_copy(update={
        "hosts": [f"http://10.0.0.{i}:11434" for i in range(20)], "embedded": False})})
    clock = iter(float(t) for t in range(1000))
    asked: list[float] = []

    def probe(url: str, timeout_s: float) -> bool:  # each probe "takes" one clock tick
        asked.append(timeout_s)
        return False

    tier = statusline.probe_tier(settings, probe, clock=lambda: next(clock) * 0.25)
    assert tier == statusline.Tier(False, "")
    assert 1 <= len(asked) <= 4 and all(t <= statusline.PROBE_TIMEOUT_S for t in asked)


def test_a_server_that_never_answers_is_down_not_a_hang() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # accepts the connection, never answers
        host, port = sock.getsockname()
        assert statusline.http_probe(f"http://{host}:{port}/api/version", 0.2) is False
    assert statusline.http_probe(f"{refused_url()}/api/version", 0.2) is False


def test_the_parse_reads_what_claude_code_documents() -> None:
    given = statusline.parse(json.dumps({"session_id": "s", "cwd": "/a", "workspace": {"project_dir": "/p"},
                                         "rate_limits": {"five_hour": {"used_percentage": 12, "resets_at": 99},
                                                         "seven_day": {"used_percentage": True}}}))
    assert given.session_id == "s" and given.project == "/p"
    assert given.five_hour is not None and given.five_hour.used_pct == 12 and given.five_hour.resets_at == 99
    assert given.seven_day is None  # a boolean is not a percentage
    assert statusline.parse(json.dumps({"cwd": "/a"})).project == "/a"
