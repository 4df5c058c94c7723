"""Answers that are right, not only well-formed: grounding, agreement and measured trust, end to end
(the real clients against the loopback Ollama and Anthropic servers, the ledger read row by row)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from ollama_dist.cli import app
from tests.run.test_run import claude, ledger_rows, ollama, run_json, world  # noqa: F401  (fixtures world needs)

runner = CliRunner()
SCHEMA = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}


def city_task(folder: Path, *, count: int = 1, output: str = "", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"in{i}.txt").write_text(f"Our office moved from Lisbon to A, town number {i}.\n")
    path = folder / "city.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: city
        prompt: Extract the city from this sentence. Reply with JSON only.
        inputs: {{files: ['in*.txt']}}
        output:
          format: json
          schema: {json.dumps(SCHEMA)}
        """) + textwrap.indent(output, "  ") + extra)
    return path


def city(name: str) -> str:
    return json.dumps({"city": name})


# ------------------------------------------------------------------------- grounding


def test_a_value_not_in_the_input_is_retried_naming_it_then_escalated(world: dict[str, Any]) -> None:
    world["ollama"].script([city("Paris"), city("Pytorch")])
    world["claude"].answer("*", [city("Lisbon")])
    code, data, _ = run_json(str(city_task(Path("t"))))
    assert code == 0
    (job,) = data["jobs"]
    assert job["escalated"] and job["value"] == {"city": "Lisbon"} and job["checks"] == ["format", "schema", "grounded"]
    assert job["escalation_reason"] == "ungrounded"
    assert data["totals"]["escalation_reasons"] == {"ungrounded": 1}
    retry = world["ollama"].requests[1]["messages"][-1]["content"]
    assert "not in the input: $.city 'Paris'" in retry and "appear in the input" in retry
    rows = ledger_rows(world["home"], data["run_id"])
    assert [(r["lane"], r["outcome"]) for r in rows] == [("local", "invalid"), ("local", "invalid"), ("cloud", "ok")]
    assert all(r["reason"].startswith("not in the input") for r in rows[:2])
    assert not any("Paris" in json.dumps(r, default=str) for r in rows)  # the ledger keeps the kind only


def test_grounding_can_be_turned_off_or_narrowed_in_the_task(world: dict[str, Any]) -> None:
    world["ollama"].script([city("Paris")])
    code, data, _ = run_json(str(city_task(Path("off"), output="grounded: false\n")))
    assert code == 0 and data["jobs"][0]["value"] == {"city": "Paris"}
    assert data["jobs"][0]["checks"] == ["format", "schema"]  # what "ok" proved, and no more


# ------------------------------------------------------------------------- agreement


def test_agreement_asks_n_samples_and_keeps_the_majority_value(world: dict[str, Any]) -> None:
    world["ollama"].latency_s = 0.05
    world["ollama"].script([city("A"), city("Lisbon"), city("Lisbon")])
    code, data, _ = run_json(str(city_task(Path("t"), output="agree: 3\n")))
    assert code == 0
    (job,) = data["jobs"]
    assert job["status"] == "ok" and not job["escalated"] and job["value"] == {"city": "Lisbon"}
    assert job["checks"] == ["format", "schema", "grounded", "agree"]
    first, *samples = world["ollama"].requests
    assert "seed" not in first["options"] and first["options"]["temperature"] == 0
    assert [(s["options"]["seed"], s["options"]["temperature"]) for s in samples] == [(1, 0.7), (2, 0.7)]
    rows = ledger_rows(world["home"], data["run_id"])
    assert [(r["attempt"], r["outcome"], r["final"]) for r in rows] == [(1, "invalid", 0), (2, "ok", 0), (3, "ok", 1)]
    assert rows[0]["reason"] == "agree: outvoted by the majority"
    agreement = job["agreement"]
    assert (agreement["asked"], agreement["votes"], agreement["needed"], agreement["agreed"]) == (3, 2, 2, True)
    local_s = sum(r["latency_s"] for r in rows)  # the cost: local seconds, in the ledger and in the JSON
    assert local_s > 0 and abs(agreement["local_s"] - local_s) < 0.01 and abs(job["local_s"] - local_s) < 0.01
    assert data["totals"]["cost_usd"] == 0


def test_disagreeing_samples_escalate_without_a_retry(world: dict[str, Any]) -> None:
    world["ollama"].script([city("A"), city("Lisbon"), city("Madrid")])
    world["claude"].answer("*", [city("Lisbon")])
    code, data, _ = run_json(str(city_task(Path("t"), output="agree: 3\n")))
    assert code == 0
    (job,) = data["jobs"]
    assert job["escalated"] and job["value"] == {"city": "Lisbon"} and len(world["ollama"].requests) == 3
    assert job["agreement"] == {"asked": 3, "votes": 0, "needed": 2, "agreed": False, "local_s": job["local_s"]}
    assert data["totals"]["escalation_reasons"] == {"disagree": 1}
    rows = ledger_rows(world["home"], data["run_id"])
    assert [(r["lane"], r["outcome"]) for r in rows] == [("local", "invalid")] * 3 + [("cloud", "ok")]
    assert all(r["reason"] == "the local answers disagree" for r in rows[:3])
    claude_body = world["claude"].calls("/v1/messages")[0].body
    assert "temperature" not in claude_body and "seed" not in claude_body  # sampling stays local


# ------------------------------------------------------------------------- measured trust


def test_local_answers_claude_contradicts_send_the_task_to_claude(world: dict[str, Any]) -> None:
    world["ollama"].script([city("A")] * 3)
    world["claude"].answer("*", [city("Lisbon")] * 3)
    task = city_task(Path("t"), count=3)
    code, data, _ = run_json(str(task), "--shadow", "1.0")
    assert code == 0 and data["totals"]["answered_local"] == 3  # each local answer passed its checks...
    status = json.loads(runner.invoke(app, ["router-status", "--json"]).stdout)
    trust = status["trust"]["city"]
    assert (trust["right"], trust["wrong"], trust["accuracy"], trust["shadow_differs"]) == (0, 3, 0.0, 3)
    assert trust["goes_to_claude"] and "it goes to Claude" in trust["advice"]
    assert any(w.startswith("task city: local answers often wrong") for w in status["warnings"])
    routed = json.loads(runner.invoke(app, ["route", str(task), "--json"]).stdout)
    assert {r["target"] for r in routed} == {"cloud"}  # ...but Claude's differed: the task stops going local
    assert all(r["rule"] == "cloud:local-accuracy" and "local answers often wrong" in r["reasons"][0] for r in routed)


def test_answers_cut_off_at_max_tokens_advise_raising_it_not_claude(world: dict[str, Any]) -> None:
    world["ollama"].script([city(" ".join(f"Lisbon{i}" for i in range(40)))] * 6)  # long, not a loop
    task = city_task(Path("t"), count=3, extra="max_tokens: 20\n")
    code, data, _ = run_json(str(task))
    assert code == 0 and data["totals"]["escalation_reasons"] == {"cut_off": 3}
    status = json.loads(runner.invoke(app, ["router-status", "--json"]).stdout)
    trust = status["trust"]["city"]
    assert (trust["cut_off"], trust["wrong"], trust["accuracy"], trust["goes_to_claude"]) == (3, 0, None, False)
    assert "raise the task's max_tokens" in trust["advice"]
    routed = json.loads(runner.invoke(app, ["route", str(task), "--json"]).stdout)
    assert all("cut off at max_tokens: raise max_tokens" in " ".join(r["reasons"]) for r in routed)


def test_answers_that_loop_until_max_tokens_count_as_wrong_and_send_the_task_to_claude(
        world: dict[str, Any]) -> None:
    """A small model stuck in a loop (`"and", "and", ...` until max_tokens, seen with Gemma 3 270M):
    a larger max_tokens would buy a longer loop, so the advice is Claude, not max_tokens."""
    world["ollama"].script([city("Lisbon and " * 40)] * 6)
    task = city_task(Path("t"), count=3, extra="max_tokens: 20\n")
    code, data, _ = run_json(str(task))
    assert code == 0 and data["totals"]["escalation_reasons"] == {"looped": 3}
    retries = [r["messages"][-1]["content"] for r in world["ollama"].requests if len(r["messages"]) > 2]
    assert len(retries) == 3 and all(  # each retry is told what it repeated (cut where the answer was)
        re.search(r"repeated itself until max_tokens \(20\): '(Lisbon and|and Lisbon)' over and over", r)
        for r in retries), retries
    rows = ledger_rows(world["home"], data["run_id"])
    assert {r["reason"] for r in rows if r["lane"] == "local"} == {
        "the answer repeated itself until max_tokens: the model looped"}  # no answer text kept
    trust = json.loads(runner.invoke(app, ["router-status", "--json"]).stdout)["trust"]["city"]
    assert (trust["cut_off"], trust["wrong"], trust["accuracy"], trust["goes_to_claude"]) == (0, 3, 0.0, True)
    assert "answers that loop" in trust["advice"] and "max_tokens" not in trust["advice"].split(":")[0]
    routed = json.loads(runner.invoke(app, ["route", str(task), "--json"]).stdout)
    assert {r["rule"] for r in routed} == {"cloud:local-accuracy"}


def test_two_wrong_answers_are_wrong_so_far_not_yet_distrusted(world: dict[str, Any]) -> None:
    world["ollama"].script([city("Pytorch")] * 4)
    world["claude"].answer("*", [city("A")] * 2)
    task = city_task(Path("t"), count=2)
    assert run_json(str(task))[0] == 0
    trust = json.loads(runner.invoke(app, ["router-status", "--json"]).stdout)["trust"]["city"]
    assert (trust["wrong"], trust["accuracy"], trust["goes_to_claude"]) == (2, 0.0, False)
    assert trust["advice"] == "2 of 2 judged local answers wrong so far: at 3 judged jobs below 70% it goes to Claude"
    shown = runner.invoke(app, ["router-status"], terminal_width=120).stdout
    assert "wrong so far" in shown


def test_router_status_shows_the_trust_table(world: dict[str, Any]) -> None:
    world["ollama"].script([city("A")])
    assert run_json(str(city_task(Path("t"))))[0] == 0
    shown = runner.invoke(app, ["router-status"], terminal_width=200).stdout
    assert "local answers per task" in shown and "acc." in shown and "100%" in shown
