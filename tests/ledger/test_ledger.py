"""The ledger's schema is pinned; migrations are append-only and idempotent."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ollama_dist.ledger.migrations import MIGRATIONS
from ollama_dist.ledger.store import ATTEMPT_COLUMNS, Attempt, Ledger

PINNED_ATTEMPTS = [
    "id", "run_id", "session", "ts", "job_id", "task", "task_fingerprint", "input_hash", "models_key",
    "routed_to", "lane", "backend", "model", "host", "attempt", "outcome", "reason", "fallback", "final",
    "input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens", "latency_s", "cost_usd",
    "baseline_cost_usd", "git_head", "output_path", "output_hash", "prompt_text", "answer_text",
    "reported_cost_usd", "tokens_estimated", "wait_s", "unanswered_baseline_usd", "thinking_tokens",
]
PINNED_RUNS = ["run_id", "session", "batch_id", "started_at", "finished_at", "root", "git_head", "jobs",
               "exit_code", "error"]


def test_schema_is_pinned(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    assert ledger.columns("attempts") == PINNED_ATTEMPTS
    assert ledger.columns("runs") == PINNED_RUNS
    assert set(ATTEMPT_COLUMNS) == set(PINNED_ATTEMPTS) - {"id"}
    mode = ledger.connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_migrations_have_unique_names_and_run_once(tmp_path: Path) -> None:
    names = [name for name, _ in MIGRATIONS]
    assert len(names) == len(set(names)) and names == sorted(names)
    Ledger(tmp_path / "l.db").close()
    Ledger(tmp_path / "l.db").close()
    applied = sqlite3.connect(tmp_path / "l.db").execute("SELECT name FROM schema_migrations").fetchall()
    assert [a[0] for a in applied] == names


def attempt(**kw: object) -> Attempt:
    base = dict(run_id="r", session="s", job_id="j", task="t", task_fingerprint="f", input_hash="h",
                models_key="m", routed_to="local", lane="local", backend="ollama", model="gemma3:270m",
                attempt=1, outcome="ok")
    base.update(kw)
    return Attempt(**base)  # type: ignore[arg-type]


def test_cache_lookup_matches_task_input_and_models(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    ledger.record(attempt(outcome="invalid"))
    assert ledger.cached("f", "h", "m") is None
    ledger.record(attempt(output_path="/x", output_hash="abc", final=True))
    hit = ledger.cached("f", "h", "m")
    assert hit is not None and hit.output_path == "/x"
    assert ledger.cached("f", "h", "other-models") is None
    assert ledger.cached("other-task-def", "h", "m") is None


def test_discarded_answers_are_not_served_again_and_stay_recorded(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    assert ledger.columns("discarded_answers") == ["id", "run_id", "ts", "task_fingerprint", "input_hash",
                                                   "models_key", "before_id"]
    ledger.record(attempt(output_path="/old", output_hash="a", final=True))
    ledger.record(attempt(input_hash="other", output_path="/kept", output_hash="b", final=True))
    assert ledger.discard("r2", [("f", "h", "m"), ("f", "h", "m"), ("f", "never", "m")]) == 1
    assert ledger.cached("f", "h", "m") is None  # asked again, however many runs later
    assert ledger.cached("f", "other", "m") is not None  # another input is not touched
    ledger.record(attempt(run_id="r2", output_path="/new", output_hash="c", final=True))
    hit = ledger.cached("f", "h", "m")
    assert hit is not None and hit.output_path == "/new"  # the new answer is served
    rows = ledger.connection.execute("SELECT output_path FROM attempts ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["/old", "/kept", "/new"]  # history kept


def test_history_counts_jobs_that_failed_locally(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    for job in ("a", "b", "c"):
        ledger.record(attempt(job_id=job, outcome="invalid", attempt=1))
        ledger.record(attempt(job_id=job, outcome="invalid", attempt=2))
    ledger.record(attempt(job_id="d"))
    hist = ledger.history(["t"])["t"]
    assert (hist.local_jobs, hist.local_failures) == (4, 3)


def test_history_tells_right_wrong_cut_off_and_malformed_local_answers_apart(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    rows = {
        "right": [dict(outcome="ok", final=True)],
        "fixed-on-retry": [dict(reason="not in the input: $.city 'X'", outcome="invalid"),
                           dict(attempt=2, outcome="ok", final=True)],
        "ungrounded": [dict(outcome="invalid", reason="not in the input: $.city 'Paris'"),  # stored text
                       dict(attempt=2, outcome="invalid", reason="not in the input: a value the answer gives ...")],
        "disagree": [dict(outcome="invalid", reason="the local answers disagree"),
                     dict(attempt=2, outcome="invalid", reason="the local answers disagree")],
        "contradicted": [dict(outcome="ok", final=True),
                         dict(lane="cloud", attempt=2, outcome="ok", reason="shadow: differs from the local answer")],
        "confirmed": [dict(outcome="ok", final=True),
                      dict(lane="cloud", attempt=2, outcome="ok", reason="shadow: same answer")],
        "cut": [dict(outcome="invalid", reason="the answer was cut off at max_tokens (96); answer more briefly"),
                dict(attempt=2, outcome="invalid", reason="the answer was cut off at max_tokens")],
        "malformed": [dict(outcome="invalid", reason="invalid JSON"), dict(attempt=2, outcome="invalid")],
        "timed-out": [dict(outcome="error", reason="timeout")],
        "never-local": [dict(lane="local", outcome="skipped", reason="breaker_open")],
    }
    for job, attempts in rows.items():
        for kw in attempts:
            ledger.record(attempt(job_id=job, **kw))
    h = ledger.history(["t"])["t"]
    assert (h.local_jobs, h.local_failures, h.local_right, h.local_wrong, h.local_cut_off) == (9, 4, 3, 3, 1)
    assert (h.shadowed, h.shadow_differs, h.judged, h.accuracy) == (2, 1, 6, 0.5)


def test_two_ledgers_write_concurrently(tmp_path: Path) -> None:
    a, b = Ledger(tmp_path / "l.db"), Ledger(tmp_path / "l.db")
    for i in range(50):
        a.record(attempt(job_id=f"a{i}"))
        b.record(attempt(job_id=f"b{i}"))
    count = a.connection.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    assert count == 100


def test_a_lone_surrogate_in_stored_text_is_kept_as_a_question_mark(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    row = ledger.record(attempt(answer_text='{"city": "\udce9"}'))
    stored = ledger.connection.execute("SELECT answer_text FROM attempts WHERE id = ?", (row,)).fetchone()[0]
    assert stored == '{"city": "?"}'


def test_instruction_embeddings_are_pinned_and_kept_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    assert ledger.columns("instruction_embeddings") == ["fingerprint", "model_id", "vector", "created_at"]
    assert ledger.columns("task_instructions") == ["task_fingerprint", "task", "instruction", "created_at"]
    assert ledger.vector("k", "m") is None
    ledger.save_vector("k", "m", b"\x00\x01")
    ledger.save_vector("k", "m", b"\x02")  # the first one stands: same instruction, same model
    ledger.save_vector("k", "other", b"\x03")
    assert ledger.vector("k", "m") == b"\x00\x01" and ledger.vector("k", "other") == b"\x03"


def test_plan_usage_is_pinned_and_repeated_readings_are_kept_once(tmp_path: Path) -> None:
    from ollama_dist.ledger import plan_usage
    from ollama_dist.ledger.plan_usage import PlanUsage, Window

    ledger = Ledger(tmp_path / "l.db")
    assert ledger.columns("plan_usage") == ["id", "ts", "session", "five_hour_pct", "five_hour_resets_at",
                                            "seven_day_pct", "seven_day_resets_at"]
    first = PlanUsage(1000.0, "s1", Window(40.0, 5000.0), Window(10.0, None))
    assert ledger.record_plan_usage(first)
    assert not ledger.record_plan_usage(PlanUsage(1010.0, "s1", Window(40.0, 5000.0), Window(10.0, None)))
    assert ledger.record_plan_usage(PlanUsage(1020.0, "s1", Window(45.0, 5000.0), None))  # changed
    assert ledger.record_plan_usage(PlanUsage(1030.0, "s2", Window(45.0, 5000.0), None))  # another session
    assert ledger.record_plan_usage(PlanUsage(1020.0 + plan_usage.SAME_READING_S, "s1", Window(45.0, 5000.0)))
    latest = ledger.read(plan_usage.latest)
    assert latest is not None and latest.session == "s1" and latest.five_hour == Window(45.0, 5000.0)
    span = ledger.read(lambda c: plan_usage.span(c, session="s1"))
    assert span is not None and span[0] == first and span[1].ts == 1320.0
    assert ledger.read(lambda c: plan_usage.span(c, session="none")) is None
    # a reading vouches for its share until the window resets; without a reset time, for max_age_s
    assert first.five_hour_now(4999.0, 60) == 40.0 and first.five_hour_now(5000.0, 60) is None
    undated = PlanUsage(1000.0, "s", Window(70.0))
    assert undated.five_hour_now(1060.0, 60) == 70.0 and undated.five_hour_now(1061.0, 60) is None
    assert PlanUsage(1000.0, "s").five_hour_now(1000.0, 60) is None
