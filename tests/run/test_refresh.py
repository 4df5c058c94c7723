"""`run --refresh` and `--refresh-task TASK` (and the MCP `run_tasks` `refresh` argument): cached
answers are discarded and asked again; the ledger keeps the old attempts and never serves them again."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ollama_dist.integrations.claude_code import mcp_server
from tests.run.test_run import claude, ledger_rows, ollama, run_json, task_file, world  # noqa: F401  (fixtures)


def served(data: dict[str, Any]) -> list[bool]:
    return [j["cache_hit"] for j in data["jobs"]]


def test_refresh_asks_every_job_again_and_later_runs_serve_the_new_answer(world: dict[str, Any]) -> None:
    # "Lisbon" is in the input (grounded) but wrong: the office moved from Lisbon to A
    world["ollama"].script([json.dumps({"city": "Lisbon"})] * 2 + [json.dumps({"city": "A"})] * 2)
    path = task_file(Path("t"), count=2)
    path.write_text(path.read_text().replace("output:\n", "output:\n  write: 'out/{stem}.json'\n"))
    assert run_json(str(path))[0] == 0
    assert json.loads(Path("t/out/in0.json").read_text()) == {"city": "Lisbon"}
    code, data, err = run_json(str(path))
    assert code == 0 and served(data) == [True, True]  # without --refresh the wrong answer stays
    code, data, err = run_json(str(path), "--refresh")
    assert code == 0, err
    assert served(data) == [False, False] and len(world["ollama"].requests) == 4
    assert [j["value"] for j in data["jobs"]] == [{"city": "A"}] * 2
    assert json.loads(Path("t/out/in0.json").read_text()) == {"city": "A"}
    assert "--refresh: 2 cached answer(s) discarded and asked again" in data["notes"]
    code, data, _ = run_json(str(path))
    assert served(data) == [True, True] and [j["value"] for j in data["jobs"]] == [{"city": "A"}] * 2
    answers = [r for r in ledger_rows(world["home"]) if r["outcome"] == "ok"]
    assert len(answers) == 4  # the discarded answers are still in the ledger


def test_refresh_task_asks_only_that_task_again(world: dict[str, Any]) -> None:
    world["ollama"].script([json.dumps({"city": "A"})] * 3)
    a, b = task_file(Path("a"), "alpha"), task_file(Path("b"), "beta")
    assert run_json(str(a), str(b))[0] == 0
    code, data, err = run_json(str(a), str(b), "--refresh-task", "beta")
    assert code == 0, err
    assert {j["task"]: j["cache_hit"] for j in data["jobs"]} == {"alpha": True, "beta": False}
    assert len(world["ollama"].requests) == 3


def test_a_discarded_answer_is_not_served_even_when_asking_again_failed(world: dict[str, Any],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    world["ollama"].script([json.dumps({"city": "Lisbon"})] + ["not json"] * 2 + [json.dumps({"city": "A"})])
    path = task_file(Path("t"))
    assert run_json(str(path))[0] == 0
    monkeypatch.delenv("ANTHROPIC_API_KEY")  # the escalation fails too
    code, data, _ = run_json(str(path), "--refresh")
    assert code == 1 and data["jobs"][0]["status"] == "failed"
    code, data, _ = run_json(str(path))  # the wrong answer does not come back from the ledger
    assert code == 0 and served(data) == [False] and data["jobs"][0]["value"] == {"city": "A"}


def test_refreshing_a_task_the_run_does_not_have_is_bad_input(world: dict[str, Any]) -> None:
    path = task_file(Path("t"))
    code, _, err = run_json(str(path), "--refresh-task", "ctiy")
    assert code == 2 and "refresh names `ctiy`, which is not a task of this run" in err and "tasks here: city" in err
    assert world["ollama"].requests == []


async def test_mcp_run_tasks_takes_refresh(world: dict[str, Any]) -> None:
    world["ollama"].script([json.dumps({"city": "A"})] * 3)
    task_file(Path("t"))
    env = {**os.environ}
    state = mcp_server.ServerState("s", Path.cwd().resolve(), env)
    schema = mcp_server.TOOLS["run_tasks"].input_schema["properties"]["refresh"]
    assert schema["type"] == ["boolean", "array"]
    first = await mcp_server.call("run_tasks", {"path": "t"}, state)
    again = await mcp_server.call("run_tasks", {"path": "t"}, state)
    fresh = await mcp_server.call("run_tasks", {"path": "t", "refresh": ["city"]}, state)
    every = await mcp_server.call("run_tasks", {"path": "t", "refresh": True}, state)
    assert [r["jobs"][0]["cache_hit"] for r in (first, again, fresh, every)] == [False, True, False, False]
    with pytest.raises(mcp_server.InputError, match="`refresh` must be"):
        await mcp_server.call("run_tasks", {"path": "t", "refresh": "city"}, state)
