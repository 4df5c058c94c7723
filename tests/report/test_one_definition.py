"""The run summary and `router-status` over the same run say the same: one definition of jobs,
diversion and escalation (`ollama_dist.ledger.tally`), after cache hits and after an interrupted
run, in the JSON and in the tables' words."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ollama_dist import api
from ollama_dist.cli import app
from ollama_dist.config import load_settings
from ollama_dist.report import render
from ollama_dist.report.status import router_status
from tests.run.test_run import claude, ollama, run_json, task_file, world  # noqa: F401

runner = CliRunner()
SHARED = ("routed_local", "routed_cloud", "escalated", "diversion_rate", "escalation_rate", "escalation_reasons",
          "cache_hits", "cost_usd", "baseline_cost_usd", "answered_baseline_usd", "unanswered_baseline_usd")


def agree(totals: dict[str, Any], status: dict[str, Any]) -> None:
    assert status["jobs"] == totals["jobs"]
    assert status["local"] == totals["answered_local"] and status["cloud"] == totals["answered_cloud"]
    assert status["savings_usd"] == pytest.approx(totals["saved_usd"])
    assert status["savings_pct"] == pytest.approx(totals["saved_pct"])
    for key in SHARED:
        assert status[key] == pytest.approx(totals[key]), key


def value(text: str, what: str) -> str:
    """The value of row `what` of a two-column table in `text` (rendered wide enough not to wrap)."""
    row = next(r for r in text.splitlines() if r.strip("│┃ ").startswith(what))
    return row.rstrip(" │").split("│")[-1].strip()


def rendered(table: Any) -> str:
    from rich.console import Console

    console = Console(width=300, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_after_cache_hits_the_run_and_router_status_agree(world: dict[str, Any]) -> None:
    world["ollama"].script(lambda body: "no json" if "number 2" in body["messages"][0]["content"]
                           or "number 3" in body["messages"][0]["content"] else json.dumps({"city": "A"}))
    path = task_file(Path("t"), count=2)
    assert run_json(str(path), "--session", "first")[0] == 0
    path = task_file(Path("t"), count=4)  # in0, in1 answered before; in2, in3 new, and they escalate
    code, data, err = run_json(str(path), "--session", "second")
    assert code == 0, err
    totals = data["totals"]
    assert (totals["jobs"], totals["cache_hits"], totals["escalated"], totals["routed_local"]) == (4, 2, 2, 2)
    assert totals["escalation_rate"] == 1.0 and totals["diversion_rate"] == 0.5
    result = runner.invoke(app, ["router-status", "--session", "second", "--json"])
    status = json.loads(result.stdout)
    agree(totals, status)
    assert status["escalation_reasons"] == totals["escalation_reasons"] == {"invalid": 2}
    # the tables say it in the same words (a third run, all from the cache now, shows the table)
    words = value(rendered(render.router_status_table(router_status(load_settings(), session="second"))),
                  "escalated")
    assert words == "2 of 2 routed local (100.0%), 2 from the cache aside: invalid 2"
    Path("t/in4.txt").write_text("Our office moved to town number 3 again.\n")
    shown = runner.invoke(app, ["run", str(path), "--session", "third", "--root", "."], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.stderr
    third = runner.invoke(app, ["router-status", "--session", "third"], env={"COLUMNS": "300"})
    assert value(shown.stdout, "escalated") == value(third.stdout, "escalated") == (
        "1 of 1 routed local (100.0%), 4 from the cache aside: invalid 1")


async def test_after_an_interrupted_run_the_run_and_router_status_agree(world: dict[str, Any]) -> None:
    """Two local jobs finish, a cloud job is cut off mid-way after one paid, invalid attempt."""
    release = threading.Event()
    calls: list[int] = []

    def cloud(body: dict[str, Any]) -> str:
        calls.append(1)
        if len(calls) == 1:
            return "not what was asked"  # invalid: the second attempt follows, and hangs
        release.wait(30)
        return "OK"

    world["ollama"].script([json.dumps({"city": "A"})] * 2)
    world["claude"].answer("claude-sonnet-5-5", cloud)
    task_file(Path("t"), count=2)
    Path("t/why.yaml").write_text("name: why\nprompt: Why does this design trade latency for safety?\n"
                                  "output: {pattern: '^OK'}\n")
    settings = load_settings()
    partial: list[api.RunReport] = []
    done: list[object] = []
    run = asyncio.create_task(api.run_async([Path("t")], root=Path.cwd(), settings=settings, session="cut",
                                            on_event=done.append, on_interrupt=partial.append))
    try:
        for _ in range(600):
            await asyncio.sleep(0.05)
            if len(done) == 2 and len(calls) == 2:
                break
        assert len(done) == 2 and len(calls) == 2, "the run must be cut off mid-way for this test to mean anything"
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    finally:
        release.set()
    (report,) = partial
    totals = report.totals()
    assert report.interrupted and totals["jobs"] == 2 and totals["unfinished"] == 1
    # the cut-off job's paid attempt counts in the cost, and on both sides
    assert totals["cost_usd"] > 0 and totals["saved_usd"] == pytest.approx(totals["answered_baseline_usd"]
                                                                           - totals["cost_usd"])
    status = router_status(settings, session="cut").as_json()
    agree(totals, status)
    assert value(rendered(render.summary_table(report)), "escalated") == value(
        rendered(render.router_status_table(router_status(settings, session="cut"))), "escalated")
