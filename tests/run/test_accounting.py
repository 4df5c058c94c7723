"""Honest accounting, end to end on the loopback servers: a job's baseline counts once whatever
its attempts, failures never make savings negative (only escalations or shadow calls that cost
more than Claude do, and those jobs are named), a run that answered nothing saves nothing, queue
wait and service time are recorded apart, and only a model that answered is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ollama_dist import api
from ollama_dist.cli import app
from ollama_dist.config import load_settings
from ollama_dist.ledger.pricing import PriceTable, Usage
from ollama_dist.ledger.store import Ledger
from ollama_dist.run.breaker import Breaker
from ollama_dist.run.dispatch import Dispatcher, RunContext
from tests.run.test_run import claude, ledger_rows, ollama, run_json, task_file, world  # noqa: F401
from tests.servers.ollama import refused_url

runner = CliRunner()
PRICES = PriceTable.load()
WHY = "name: why\nprompt: Why does this design trade latency for safety?\n"


def table(*args: str) -> tuple[int, str]:
    """`run` as a user sees it, on a terminal wide enough that no cell wraps."""
    result = runner.invoke(app, ["run", *args, "--root", "."], env={"COLUMNS": "300"})
    return result.exit_code, " ".join(result.stdout.split())


def usage(row: dict[str, Any]) -> Usage:
    return Usage(row["input_tokens"], row["output_tokens"], row["cache_creation_tokens"], row["cache_read_tokens"])


def by_job(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    jobs: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        jobs.setdefault(row["job_id"], []).append(row)
    return jobs


def one_number(body: dict[str, Any]) -> str:
    """The local model: job 1 never answers well, the others do."""
    return "no json here" if "number 1" in body["messages"][0]["content"] else json.dumps({"city": "A"})


def test_a_job_counts_once_in_the_baseline_whatever_its_attempts(world: dict[str, Any]) -> None:
    world["ollama"].script(one_number)
    world["claude"].answer("claude-haiku-5-5", [json.dumps({"city": "Lisbon"})])
    world["claude"].answer("claude-sonnet-5-5", ["not what was asked", "OK: safety first"])
    task_file(Path("t"), count=2)
    Path("t/why.yaml").write_text(WHY + "output: {pattern: '^OK'}\n")
    code, data, err = run_json("t")
    assert code == 0, err
    rows = by_job(ledger_rows(world["home"], data["run_id"]))
    jobs = {j["job"]: j for j in data["jobs"]}
    local_ok, escalated, why = (next(j for j in data["jobs"] if pick(j)) for pick in (
        lambda j: j["task"] == "city" and not j["escalated"], lambda j: j["escalated"], lambda j: j["task"] == "why"))
    # answered locally: its tokens at the cloud model's price, once
    (row,) = rows[local_ok["job"]]
    assert row["baseline_cost_usd"] == pytest.approx(PRICES.baseline("claude-sonnet-5-5", usage(row)))
    assert row["cost_usd"] == 0
    # escalated: the two invalid local answers add nothing; the cloud answer's tokens at the cloud model's price
    local1, local2, cloud = rows[escalated["job"]]
    assert local1["baseline_cost_usd"] == local2["baseline_cost_usd"] == 0
    assert cloud["baseline_cost_usd"] == pytest.approx(PRICES.baseline("claude-sonnet-5-5", usage(cloud)))
    assert cloud["cost_usd"] == pytest.approx(PRICES.cost("claude-haiku-5-5", usage(cloud)))
    # routed to the cloud: the failed first attempt is cost on both sides, so the job saves nothing
    invalid, answered = rows[why["job"]]
    assert (invalid["outcome"], answered["outcome"]) == ("invalid", "ok")
    assert invalid["cost_usd"] > 0 and invalid["baseline_cost_usd"] == pytest.approx(invalid["cost_usd"])
    assert jobs[why["job"]]["baseline_cost_usd"] == pytest.approx(jobs[why["job"]]["cost_usd"])
    totals = data["totals"]
    assert totals["baseline_cost_usd"] == pytest.approx(sum(j["baseline_cost_usd"] for j in data["jobs"]))
    assert totals["unanswered_baseline_usd"] == 0 and totals["cost_more_than_claude"] == []
    assert totals["saved_usd"] == pytest.approx(totals["baseline_cost_usd"] - totals["cost_usd"])
    assert totals["saved_usd"] > 0


def test_failed_attempts_never_make_savings_negative(world: dict[str, Any]) -> None:
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\ncloud: {max_retries: 0}\n")
    world["ollama"].script(one_number)
    world["claude"].fail_next(529, times=20)
    task_file(Path("t"), count=2)
    Path("t/why.yaml").write_text(WHY)
    code, data, _ = run_json("t")
    assert code == 1
    totals = data["totals"]
    assert (totals["ok"], totals["failed"]) == (1, 2)
    answered = next(j for j in data["jobs"] if j["status"] == "ok")
    # the two failed jobs never reached a model that priced their work: estimated, in the baseline only
    assert totals["unanswered_baseline_usd"] > 0
    assert totals["baseline_cost_usd"] == pytest.approx(totals["answered_baseline_usd"]
                                                        + totals["unanswered_baseline_usd"])
    assert totals["saved_usd"] == pytest.approx(answered["baseline_cost_usd"])
    assert totals["saved_usd"] > 0
    assert 0 < totals["saved_pct"] < 100
    code, out = table("t")  # answered now from the cache, the failures again
    assert code == 1
    assert "on the 1 answered job(s); 2 failed of 3: not counted" in out


def test_a_run_that_answered_nothing_saves_nothing_and_names_no_model(isolated_home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", refused_url())  # no Ollama, and no API key
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    task_file(Path("t"), count=2)
    Path("t/why.yaml").write_text(WHY)
    dry = runner.invoke(app, ["run", "t", "--dry-run", "--json"])
    expected = sum(r["estimate"]["baseline_usd"] for r in json.loads(dry.stdout))
    code, data, _ = run_json("t")
    assert code == 1
    totals = data["totals"]
    # the whole run on Claude, as --dry-run estimates it; nothing answered, nothing saved
    assert expected > 0 and totals["baseline_cost_usd"] == pytest.approx(expected)
    assert totals["saved_usd"] == 0 and totals["saved_pct"] == 0 and totals["failed"] == 3
    for job in data["jobs"]:
        assert job["status"] == "failed" and job["actual_model"] is None
        cloud = [t for t in job["tries"] if t["lane"] == "cloud"]
        assert cloud and all(t["outcome"] == "error" and t["reason"] == "auth" for t in cloud)
        assert "ANTHROPIC_API_KEY" in job["reason"]
    _, out = table("t")
    assert "not answered" in out and "answered by" in out
    assert "nothing: no job was answered; 3 failed of 3: not counted" in out
    assert "saved 100" not in out and "(100.0%)" not in out.split("saved", 1)[1]


def test_escalations_and_shadow_calls_that_cost_more_make_savings_negative_and_are_named(
        world: dict[str, Any]) -> None:
    # the cloud model is cheap, the escalation model dear: escalating or shadowing costs more than Claude would
    Path("ollama-dist.yaml").write_text(
        "ollama: {embedded: false}\nmodels: {cloud: claude-haiku-5-5, escalation: claude-opus-5-5}\n")
    world["ollama"].script(one_number)
    world["claude"].answer("*", lambda body: json.dumps({"city": "Lisbon"}))
    path = task_file(Path("t"), count=2)
    code, data, err = run_json(str(path), "--shadow", "1.0")
    assert code == 0, err
    totals = data["totals"]
    assert totals["saved_usd"] < 0
    named = {c["job"]: c["cause"] for c in totals["cost_more_than_claude"]}
    shadowed = next(j["job"] for j in data["jobs"] if j["shadow"])
    escalated = next(j["job"] for j in data["jobs"] if j["escalated"])
    assert named == {shadowed: "shadow call", escalated: "escalation"}
    status = json.loads(runner.invoke(app, ["router-status", "--json"]).stdout)
    assert status["savings_usd"] == pytest.approx(totals["saved_usd"])
    assert {c["job"]: c["cause"] for c in status["cost_more_than_claude"]} == named
    # the summary names them
    Path("t/in2.txt").write_text("Our office moved from Lisbon to A, town number 1 again.\n")
    _, out = table(str(path))
    assert "cost more than on Claude:" in out and "(escalation, -$" in out


def test_queue_wait_and_service_time_are_recorded_apart(world: dict[str, Any]) -> None:
    # one local slot: the first request holds it for a second, the two behind it fail at once
    world["ollama"].script(lambda body: '{"city": "A"}')
    world["ollama"].fault("stall", seconds=1.0)
    world["ollama"].fault("http_500", times=2)
    code, data, err = run_json(str(task_file(Path("t"), count=3)))
    assert code == 0, err
    local = [r for r in ledger_rows(world["home"], data["run_id"]) if r["lane"] == "local"]
    errors = [r for r in local if r["outcome"] == "error"]
    (served,) = [r for r in local if r["outcome"] == "ok"]
    assert len(errors) == 2 and all(r["reason"] == "bad_response" for r in errors)
    for row in errors:  # waited behind the slow one, then failed fast: the wait is not its latency
        assert row["wait_s"] > row["latency_s"] and row["latency_s"] < served["latency_s"]
    status = json.loads(runner.invoke(app, ["router-status", "--json"]).stdout)
    assert status["p95_latency_s"]["local"] == round(max(r["latency_s"] for r in local), 3) == round(
        served["latency_s"], 3)
    assert status["p95_wait_s"]["local"] == round(max(r["wait_s"] for r in local), 3)
    for job in data["jobs"]:
        assert all(t["wait_s"] is not None for t in job["tries"])


async def test_the_breaker_reads_service_time_never_the_wait(world: dict[str, Any], tmp_path: Path) -> None:
    Path("ollama-dist.yaml").write_text(
        "ollama: {embedded: false}\nbreaker: {p95_threshold_s: 0.2, min_samples: 50, window: 50}\n")
    world["ollama"].script(lambda body: '{"city": "A"}')
    world["ollama"].fault("stall", seconds=1.0)
    world["ollama"].fault("http_500", times=2)
    settings = load_settings()
    routed = api.route([task_file(Path("t"), count=3)], root=Path.cwd(), settings=settings)
    breaker = Breaker(settings.breaker)
    ledger = Ledger(tmp_path / "l.db")
    lanes = api.build_lanes(settings)
    try:
        dispatcher = Dispatcher(settings, lanes, ledger, PRICES, breaker,
                                RunContext("r", "s", Path.cwd(), tmp_path / "out"))
        outcomes = await dispatcher.run([(r.job, r.decision) for r in routed])
    finally:
        for backend in (lanes.local, lanes.cloud):
            await backend.aclose()  # type: ignore[union-attr]
        ledger.close()
    assert [o.status for o in outcomes] == ["ok"] * 3
    # the window holds the slow answer (a second) and the two errors, each counted as twice the
    # threshold (0.4 s) for failing; not as the second each of them waited for the slot
    assert breaker.typical_latency() == pytest.approx(0.4)


def test_an_escalated_job_says_why_it_left_the_local_lane(world: dict[str, Any]) -> None:
    world["ollama"].script(one_number)
    path = task_file(Path("t"), count=2)
    code, data, err = run_json(str(path))
    assert code == 0, err
    jobs = {j["job"]: j for j in data["jobs"]}
    (escalated,) = [j for j in jobs.values() if j["escalated"]]
    assert escalated["escalation_reason"] == "invalid" and escalated["reason"] is None
    assert escalated["actual_model"] == "claude-haiku-5-5"
    assert [(t["lane"], t["outcome"]) for t in escalated["tries"]] == [("local", "invalid"), ("local", "invalid"),
                                                                        ("cloud", "ok")]
    assert all(t["reason"] for t in escalated["tries"][:2])  # each invalid answer says what was wrong
    (stayed,) = [j for j in jobs.values() if not j["escalated"]]
    assert stayed["escalation_reason"] is None and stayed["actual_model"] == "gemma3:270m"
    assert data["totals"]["escalation_reasons"] == {"invalid": 1}
    Path("t/in2.txt").write_text("Our office moved from Lisbon to A, town number 1 again.\n")
    _, out = table(str(path))
    assert "after escalation (invalid)" in out
