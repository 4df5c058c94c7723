"""`ollama-dist router-status`: every figure checked against a ledger whose rows are known,
end to end after a real run, and the queries pinned to the indexes that keep them fast."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.ledger.store import Attempt, Ledger
from ollama_dist.report import status as st
from tests.servers.anthropic import AnthropicServer
from tests.servers.ollama import FakeOllama

runner = CliRunner()
NOW = time.time()
REQUIRED = {"jobs", "local", "cloud", "escalated", "diversion_rate", "escalation_rate", "escalation_reasons",
            "cost_usd", "baseline_cost_usd", "savings_usd", "tokens_saved", "p95_latency_s", "cache_hits", "breaker"}


class Book:
    """Writes known attempts into the test home's ledger."""

    def __init__(self, home: Path) -> None:
        self.ledger = Ledger(home / "ledger.db")
        self.db = self.ledger.connection

    def run(self, run_id: str, session: str, *, at: float = NOW, finished: bool = True) -> None:
        self.db.execute("INSERT INTO runs (run_id, session, started_at, finished_at, root, jobs) "
                        "VALUES (?, ?, ?, ?, '/', 0)", (run_id, session, at, at + 5 if finished else None))

    def job(self, run_id: str, job: str, steps: list[dict[str, Any]], *, task: str = "t", routed: str = "local",
            session: str | None = None, at: float = NOW, input_hash: str | None = None) -> None:
        """One job's attempts in order; the last one is final."""
        session = session or self.db.execute("SELECT session FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
        for number, step in enumerate(steps, 1):
            lane = step.pop("lane")
            self.ledger.record(Attempt(
                run_id=run_id, session=session, job_id=job, task=task, task_fingerprint=f"fp-{task}",
                input_hash=input_hash or f"in-{job}", models_key="m", routed_to=routed, lane=lane,
                backend="ollama" if lane == "local" else "claude",
                model="gemma3:270m" if lane == "local" else "claude-haiku-5-5", attempt=number,
                final=number == len(steps), ts=at + number, **step))

    def close(self) -> None:
        self.ledger.close()


@pytest.fixture
def book(isolated_home: Path) -> Iterator[Book]:
    b = Book(isolated_home)
    yield b
    b.close()


def status_json(*args: str) -> tuple[int, dict[str, Any], str]:
    result = runner.invoke(app, ["router-status", *args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}, result.stderr


def ok(lane: str, **kw: Any) -> dict[str, Any]:
    return {"lane": lane, "outcome": "ok", **kw}


def seven_jobs(book: Book, run_id: str = "r1", session: str = "s1") -> None:
    book.run(run_id, session)
    book.job(run_id, "a", [ok("local", input_tokens=100, output_tokens=20, latency_s=1.0, baseline_cost_usd=0.01)])
    book.job(run_id, "b", [{"lane": "local", "outcome": "invalid", "reason": "missing city", "latency_s": 2.0},
                           {"lane": "local", "outcome": "invalid", "reason": "missing city", "latency_s": 3.0},
                           ok("cloud", cost_usd=0.002, baseline_cost_usd=0.006, latency_s=4.0,
                              input_tokens=50, output_tokens=10)])
    book.job(run_id, "c", [{"lane": "local", "outcome": "error", "reason": "timeout", "latency_s": 5.0},
                           ok("cloud", cost_usd=0.001, baseline_cost_usd=0.003, latency_s=6.0)])
    book.job(run_id, "d", [{"lane": "local", "outcome": "skipped", "reason": "breaker_open"},
                           ok("cloud", cost_usd=0.001, baseline_cost_usd=0.003, latency_s=7.0)])
    book.job(run_id, "e", [ok("cloud", cost_usd=0.01, baseline_cost_usd=0.01, latency_s=8.0)], task="why",
             routed="cloud")
    book.job(run_id, "f", [{"lane": "local", "outcome": "cache_hit", "baseline_cost_usd": 0.01}])
    book.job(run_id, "g", [{"lane": "local", "outcome": "error", "reason": "unreachable"},
                           {"lane": "cloud", "outcome": "error", "reason": "auth", "latency_s": 0.5}])


def test_every_figure_from_known_rows(book: Book) -> None:
    seven_jobs(book)
    code, data, err = status_json()
    assert code == 0, err
    assert REQUIRED <= set(data)
    assert data["scope"]["kind"] == "session" and data["scope"]["session"] == "s1"
    assert (data["jobs"], data["local"], data["cloud"], data["failed"]) == (7, 2, 4, 1)
    assert (data["escalated"], data["routed_local"], data["routed_cloud"]) == (4, 5, 1)
    assert data["diversion_rate"] == round(2 / 7, 4) and data["escalation_rate"] == 0.8
    assert data["escalation_reasons"] == {"breaker_open": 1, "invalid": 1, "timeout": 1, "unreachable": 1}
    assert data["cost_usd"] == pytest.approx(0.014)
    assert data["baseline_cost_usd"] == pytest.approx(0.042)
    assert data["savings_usd"] == pytest.approx(0.028) and data["savings_pct"] == pytest.approx(66.7)
    assert data["cost_per_job_usd"] == pytest.approx(0.002)
    assert data["tokens_saved"] == 120 and data["cache_hits"] == 1
    # timed calls: local 1, 2, 3, 5 s; cloud 4, 6, 7, 8, 0.5 s (nearest rank)
    assert data["p50_latency_s"] == {"local": 2.0, "cloud": 6.0}
    assert data["p95_latency_s"] == {"local": 5.0, "cloud": 8.0}
    assert data["breaker"]["state"] == "closed" and data["breaker"]["openings"] == 0
    assert data["rework"] == {"jobs": 0, "rate": 0.0, "window_s": 3600.0}
    assert data["days"] == []


def test_the_table_and_the_warnings(book: Book) -> None:
    seven_jobs(book)
    result = runner.invoke(app, ["router-status"])
    assert result.exit_code == 0
    out = result.stdout
    assert "router status: latest session s1" in out and "4 of 5 routed local (80.0%)" in out
    assert "invalid 1" in out and "$0.0280 (66.7%)" in out and "tokens kept off the cloud" in out
    assert "warning: 1 job(s) escalated because Ollama was unreachable" in result.stderr


def test_a_missing_ledger_is_zeros_not_an_error(isolated_home: Path) -> None:
    code, data, err = status_json("--all")
    assert code == 0 and "no ledger yet" in err
    assert data["jobs"] == 0 and data["escalation_reasons"] == {} and data["p95_latency_s"] == {}
    assert data["breaker"]["state"] == "closed" and data["ledger_found"] is False
    assert not (isolated_home / "ledger.db").exists()
    plain = runner.invoke(app, ["router-status"])
    assert plain.exit_code == 0 and plain.stdout == "" and "ollama-dist run" in plain.stderr


def test_an_empty_ledger_is_zeros(book: Book) -> None:
    code, data, err = status_json()
    assert code == 0 and data["jobs"] == 0 and data["ledger_found"] is True
    assert "no jobs" in err


def test_scope_env_session_then_latest_run_then_explicit(book: Book, monkeypatch: pytest.MonkeyPatch) -> None:
    book.run("old", "s-old", at=NOW - 3 * 86400)
    book.job("old", "x", [ok("local")], at=NOW - 3 * 86400)
    book.job("old", "y", [ok("local")], at=NOW - 3 * 86400)
    book.run("new", "s-new", at=NOW)
    book.job("new", "z", [ok("cloud")], routed="cloud")
    assert status_json()[1]["jobs"] == 1  # the latest run's session
    monkeypatch.setenv("CLAUDE_CODE_SESSION_ID", "s-old")
    assert status_json()[1]["jobs"] == 2
    monkeypatch.setenv("OLLAMA_DIST_SESSION", "s-new")
    _, data, _ = status_json()
    assert data["jobs"] == 1 and data["scope"]["label"] == "current session s-new"
    assert status_json("--session", "s-old")[1]["jobs"] == 2
    assert status_json("--all")[1]["jobs"] == 3
    assert status_json("--since", "1d")[1]["jobs"] == 1
    assert status_json("--since", (datetime.now() - timedelta(days=5)).date().isoformat())[1]["jobs"] == 3
    code, data, err = status_json("--session", "nope")
    assert code == 0 and data["jobs"] == 0 and "no jobs in session nope" in err


@pytest.mark.parametrize("args", [["--all", "--session", "s"], ["--since", "7d", "--all"]], ids=["all+session",
                                                                                              "since+all"])
def test_scopes_exclude_each_other(book: Book, args: list[str]) -> None:
    result = runner.invoke(app, ["router-status", *args])
    assert result.exit_code == 2 and "exclude each other" in result.stderr


@pytest.mark.parametrize(("text", "seconds"), [("7d", 7 * 86400), ("12h", 43200), ("30m", 1800), ("2w", 1209600),
                                               ("90s", 90), ("1.5h", 5400)],
                         ids=["days", "hours", "minutes", "weeks", "seconds", "fraction"])
def test_since_durations(text: str, seconds: float) -> None:
    assert st.parse_since(text, 1_000_000.0) == 1_000_000.0 - seconds


def test_a_bad_since_is_exit_2_with_a_hint(book: Book) -> None:
    result = runner.invoke(app, ["router-status", "--since", "last tuesday"])
    assert result.exit_code == 2 and "7d" in result.stderr


def test_rework_counts_answers_repeated_within_the_window(book: Book) -> None:
    book.run("r1", "s1", at=NOW - 7200)
    book.job("r1", "a", [{"lane": "local", "outcome": "invalid"}, {"lane": "cloud", "outcome": "error"}],
             at=NOW - 7200, input_hash="same")
    book.job("r1", "b", [ok("local")], at=NOW - 7200, input_hash="other")
    book.run("r2", "s1", at=NOW - 3000)  # 70 minutes later: outside the hour
    book.job("r2", "a", [ok("local")], at=NOW - 3000, input_hash="same")
    book.job("r2", "b", [{"lane": "local", "outcome": "cache_hit"}], at=NOW - 3000, input_hash="other")
    book.run("r3", "s2", at=NOW - 1200)  # 30 minutes after r2: rework, even in another session
    book.job("r3", "a", [ok("local")], at=NOW - 1200, input_hash="same")
    book.job("r3", "c", [ok("local")], at=NOW - 1200, input_hash="new")
    book.job("r3", "d", [ok("local")], at=NOW - 1100, input_hash="new")  # same run: not a re-run
    assert status_json("--all")[1]["rework"] == {"jobs": 1, "rate": round(1 / 7, 4), "window_s": 3600.0}
    assert status_json("--session", "s2")[1]["rework"]["jobs"] == 1
    assert status_json("--session", "s1")[1]["rework"]["jobs"] == 0
    assert status_json("--since", "40m")[1]["rework"]["jobs"] == 1


def test_breaker_openings_and_state(book: Book) -> None:
    book.run("done", "s1", at=NOW - 600)
    book.job("done", "a", [ok("local")], at=NOW - 600)
    book.ledger.breaker_event("done", NOW - 590, "open", "p95 41.0s > 30s")
    book.ledger.breaker_event("done", NOW - 580, "open", "probe failed")
    _, data, _ = status_json("--all")
    b = data["breaker"]
    assert b["state"] == "closed" and b["openings"] == 2  # its run has finished: that breaker is gone
    assert [o["reason"] for o in b["recent"]] == ["probe failed", "p95 41.0s > 30s"]
    book.run("live", "s2", at=NOW - 30, finished=False)
    book.job("live", "b", [ok("local")], at=NOW - 30)
    book.ledger.breaker_event("live", time.time() - 5, "open", "queue: 9 waiting")
    code, data, _ = status_json("--session", "s2")
    assert data["breaker"]["state"] == "open" and data["breaker"]["openings"] == 1 and data["breaker"]["open_until"]
    assert "latency breaker is open" in " ".join(data["warnings"])


def test_task_warnings(book: Book) -> None:
    book.run("r", "s")
    for i in range(6):
        book.job("r", f"bad{i}", [{"lane": "local", "outcome": "invalid"}, {"lane": "local", "outcome": "invalid"},
                                  ok("cloud")], task="flaky")
        book.job("r", f"easy{i}", [ok("cloud")], task="always-cloud", routed="cloud")
        book.job("r", f"fine{i}", [ok("local")], task="fine")
    _, data, _ = status_json()
    warnings = "\n".join(data["warnings"])
    assert "task flaky: 12 of 12 local answers were invalid" in warnings and "kind: reasoning" in warnings
    assert "every job of task(s) always-cloud (6) went to Claude" in warnings and "kind: deterministic" in warnings
    assert "task fine" not in warnings and "rising" not in warnings


def test_rising_escalation_rate_warns_and_by_day_draws_bars(book: Book) -> None:
    start = datetime.combine(datetime.now().date() - timedelta(days=5), datetime.min.time()).timestamp() + 12 * 3600
    for day in range(6):
        at = start + day * 86400
        book.run(f"r{day}", f"s{day}", at=at)
        for i in range(10):
            escalate = i < 2 * day  # 0%, 20%, 40%, ... escalated
            steps = [{"lane": "local", "outcome": "error", "reason": "timeout"}, ok("cloud", cost_usd=0.001)] \
                if escalate else [ok("local", baseline_cost_usd=0.004)]
            book.job(f"r{day}", f"j{i}", steps, at=at)
    code, data, _ = status_json("--all", "--by", "day")
    assert code == 0
    assert [d["escalation_rate"] for d in data["days"]] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert [d["jobs"] for d in data["days"]] == [10] * 6
    assert data["days"][-1]["day"] == datetime.now().date().isoformat()
    assert any(w.startswith("escalation rate rising: 20% -> 80%") for w in data["warnings"])
    result = runner.invoke(app, ["router-status", "--all", "--by", "day"])
    assert result.exit_code == 0 and "per day" in result.stdout and "▇" in result.stdout
    assert "100.0%" in result.stdout and "warning: escalation rate rising" in result.stderr


# ------------------------------------------------------------------------- a real run


def test_figures_match_a_real_run(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    with FakeOllama() as ollama, AnthropicServer(key="k") as claude:
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
        folder = Path("t")
        folder.mkdir()
        for i in range(3):
            (folder / f"in{i}.txt").write_text(f"Our office moved from Lisbon to A, town number {i}.\n")
        (folder / "city.yaml").write_text(
            "name: city\nprompt: Extract the city from this sentence. Reply with JSON only.\n"
            "output: {format: json, schema: {type: object, required: [city], properties: {city: {type: string}}}}\n"
            "inputs: {files: ['in*.txt']}\n")
        ollama.script(lambda body: "no json" if "number 1" in body["messages"][0]["content"] else '{"city": "A"}')
        run = runner.invoke(app, ["run", str(folder), "--json", "--quiet", "--root", "."])
        assert run.exit_code == 0, run.stderr
        totals = json.loads(run.stdout)["totals"]
        code, data, _ = status_json()
    assert code == 0
    assert data["jobs"] == totals["jobs"] == 3
    assert data["local"] == totals["answered_local"] == 2
    assert data["escalated"] == totals["escalated"] == 1
    assert data["escalation_reasons"] == {"invalid": 1}
    assert data["cost_usd"] == pytest.approx(totals["cost_usd"])
    assert data["baseline_cost_usd"] == pytest.approx(totals["baseline_cost_usd"])
    assert data["savings_usd"] == pytest.approx(totals["saved_usd"])
    assert data["tokens_saved"] > 0 and set(data["p95_latency_s"]) == {"local", "cloud"}


# ------------------------------------------------------------------------- speed, without a stopwatch


def plan(db: Any, sql: str, params: tuple[object, ...]) -> str:
    return " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_the_queries_read_the_indexes_of_migrations_0003_and_0009(book: Book, monkeypatch: pytest.MonkeyPatch) -> None:
    seven_jobs(book)
    seen: list[tuple[str, tuple[object, ...]]] = []

    class Spy:
        def __init__(self, db: Any) -> None:
            self.db = db

        def execute(self, sql: str, params: tuple[object, ...] = ()) -> Any:
            seen.append((sql, tuple(params)))
            return self.db.execute(sql, params)

    for scope in (st.Scope("all"), st.Scope("since", since=NOW - 86400)):
        seen.clear()
        st.summarize(Spy(book.db), scope, cooldown_s=60.0)  # type: ignore[arg-type]
        plans = {sql.split("FROM")[0][:40] + sql[-60:]: plan(book.db, sql, p) for sql, p in seen}
        joined = "\n".join(plans.values())
        assert "COVERING INDEX attempts_status" in joined  # the one full pass
        assert "attempts_latency" in joined and "COVERING INDEX attempts_daily" in joined
        assert "attempts_escalated" in joined and "attempts_left_local" in joined
        assert "attempts_wait" in joined  # the queue wait's percentiles (migration 0009)
        for text in plans.values():  # no step reads the table itself
            assert not {"SCAN attempts", "SCAN a", "SCAN e"} & set(text.split(" | ")), text
    rework_sql = [sql for sql, _ in seen if "pairs" in sql]
    assert not rework_sql  # rework runs on its own connection, in a worker thread
    session = st.Scope("session", session="s1")
    where, params = session.where()
    assert "attempts_session" in plan(book.db, f"SELECT latency_s FROM attempts{session.index_hint()} WHERE lane = ? "
                                      f"AND {st.TIMED} AND {where} ORDER BY latency_s LIMIT 1", ("local", *params))


def test_rework_reads_the_answers_index(book: Book) -> None:
    seven_jobs(book)
    seen: list[str] = []
    book.db.set_trace_callback(seen.append)
    try:
        st.rework(book.db, st.Scope("all"))
    finally:
        book.db.set_trace_callback(None)
    (sql,) = [s for s in seen if "pairs" in s]
    assert "attempts_answers" in plan(book.db, sql, ())


def test_waits_handed_back_and_costly_jobs_from_known_rows(book: Book) -> None:
    book.run("r", "s")
    book.job("r", "a", [ok("local", latency_s=0.5, wait_s=4.0, baseline_cost_usd=0.002)])
    book.job("r", "b", [{"lane": "local", "outcome": "error", "reason": "bad_response", "latency_s": 0.01,
                         "wait_s": 9.0}, ok("cloud", cost_usd=0.004, baseline_cost_usd=0.001, wait_s=0.0)])
    # a shadow call is never a job's final row (the last step here is)
    book.job("r", "c", [{"lane": "cloud", "outcome": "ok", "reason": "shadow", "cost_usd": 0.006},
                        ok("local", latency_s=0.7, wait_s=1.0, baseline_cost_usd=0.002)])
    book.job("r", "d", [{"lane": "cloud", "outcome": "handed_back", "unanswered_baseline_usd": 0.003}],
             routed="cloud")
    code, data, _ = status_json()
    assert code == 0
    # nearest rank over the waits, apart from the service times
    assert data["p50_wait_s"] == {"local": 4.0, "cloud": 0.0} and data["p95_wait_s"]["local"] == 9.0
    assert data["p95_latency_s"]["local"] == 0.7
    assert (data["jobs"], data["local"], data["cloud"], data["failed"], data["handed_back"]) == (4, 2, 1, 0, 1)
    assert data["baseline_cost_usd"] == pytest.approx(0.008) and data["unanswered_baseline_usd"] == 0.003
    assert data["savings_usd"] == pytest.approx(0.005 - 0.010)
    assert [(c["job"], c["cause"]) for c in data["cost_more_than_claude"]] == [("c", "shadow call"),
                                                                             ("b", "escalation")]
    result = runner.invoke(app, ["router-status"], env={"COLUMNS": "300"})
    assert "cost more than on Claude: c (shadow call, -$0.0040), b (escalation, -$0.0030)" in result.stdout


def test_handed_back_jobs_are_in_the_baseline_never_in_the_savings_and_usage_is_shown(book: Book) -> None:
    from ollama_dist.ledger.plan_usage import PlanUsage, Window

    book.run("r1", "cc-7")
    book.job("r1", "a", [ok("local", baseline_cost_usd=0.004, input_tokens=900, output_tokens=100)])
    book.job("r1", "b", [{"lane": "local", "outcome": "invalid"},
                         {"lane": "cloud", "outcome": "handed_back", "unanswered_baseline_usd": 0.003}])
    book.job("r1", "c", [{"lane": "cloud", "outcome": "handed_back", "unanswered_baseline_usd": 0.02}], routed="cloud")
    book.ledger.record_plan_usage(PlanUsage(NOW - 600, "cc-7", Window(40.0, NOW + 3600), Window(12.0, NOW + 9e5)))
    book.ledger.record_plan_usage(PlanUsage(NOW - 60, "cc-7", Window(46.0, NOW + 3600), Window(13.0, NOW + 9e5)))
    book.ledger.record_plan_usage(PlanUsage(NOW - 30, "cc-other", Window(47.0, NOW + 3600)))
    code, data, _ = status_json("--session", "cc-7")
    assert code == 0
    assert data["jobs"] == 3 and data["handed_back"] == 2 and data["failed"] == 0 and data["local"] == 1
    assert data["baseline_cost_usd"] == pytest.approx(0.027)  # the whole session on Claude
    assert data["savings_usd"] == pytest.approx(0.004) and data["cost_usd"] == 0  # only the local answer saved
    assert data["savings_pct"] == pytest.approx(14.8)
    assert data["tokens_saved"] == 1000
    plan = data["plan_usage"]
    assert plan["first_in_scope"]["five_hour"]["used_percentage"] == 40.0
    assert plan["last_in_scope"]["five_hour"]["used_percentage"] == 46.0
    assert plan["latest"]["session"] == "cc-other"
    table = runner.invoke(app, ["router-status", "--session", "cc-7"])
    assert table.exit_code == 0
    assert "handed back 2" in " ".join(part.strip() for row in table.stdout.splitlines() for part in row.split("│")[2:3])
    cells = " ".join(part.strip() for row in table.stdout.splitlines() for part in row.split("│")[2:3])
    assert "five-hour 40% -> 46%, weekly 12% -> 13% (this scope" in " ".join(cells.split()), table.stdout
    assert "1,000" in table.stdout  # tokens kept off the cloud, beside the usage
