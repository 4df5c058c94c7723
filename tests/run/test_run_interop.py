"""`ollama-dist run` against servers that are not quite Ollama: the run says which tier and host
answered (table, --json, ledger), a thinking model's trace is counted apart, and a cut-off answer
from a server that always says "stop" is never accepted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from ollama_dist.cli import app
from tests.run.test_run import claude, ledger_rows, ollama, run_json, task_file, world  # noqa: F401  (fixtures)
from tests.servers.ollama import FakeOllama

runner = CliRunner()


def test_the_run_names_the_backend_and_host_that_answered(world: dict[str, Any]) -> None:
    world["ollama"].script(lambda body: '{"city": "A"}')
    path = task_file(Path("t"))
    code, data, _ = run_json(str(path))
    (job,) = data["jobs"]
    assert code == 0 and job["answered_on"] == f"ollama {world['ollama'].url}"
    (row,) = ledger_rows(world["home"], data["run_id"])
    assert (row["backend"], row["host"]) == ("ollama", world["ollama"].url)
    other = task_file(Path("t2"), name="town")  # the table, for a job not answered yet
    table = runner.invoke(app, ["run", str(other), "--root", str(Path.cwd())], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and f"on ollama {world['ollama'].url}" in table.stdout


def test_a_server_on_the_port_that_is_not_ollama_is_passed_over_and_named(
    world: dict[str, Any], monkeypatch: Any
) -> None:
    world["ollama"].script(lambda body: '{"city": "A"}')
    with FakeOllama(broken_routes={"/api/chat": 404, "/api/show": 404}) as impostor:
        monkeypatch.setenv("OLLAMA_HOST", impostor.url)
        Path("ollama-dist.yaml").write_text(
            f"ollama: {{embedded: false, openai_compat: ['{world['ollama'].url}/v1']}}\n")
        code, data, _ = run_json(str(task_file(Path("t"))))
    (job,) = data["jobs"]
    assert code == 0 and job["status"] == "ok" and not job["escalated"]
    assert job["answered_on"] == f"openai_compat:{world['ollama'].url}/v1"
    assert [r["backend"] for r in ledger_rows(world["home"], data["run_id"])] == [f"openai_compat:{world['ollama'].url}/v1"]


def test_a_thinking_models_trace_is_counted_apart(world: dict[str, Any]) -> None:
    world["ollama"].add_model("gpt-oss:20b", thinking=True, family="gptoss")
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\nmodels: {local: 'gpt-oss:20b'}\n")
    world["ollama"].script(['{"city": "Lisbon"}'])
    code, data, _ = run_json(str(task_file(Path("t"))))
    (job,) = data["jobs"]
    assert code == 0 and job["status"] == "ok" and json.loads(Path(job["output"]).read_text()) == {"city": "Lisbon"}
    assert 0 < job["thinking_tokens"] < job["output_tokens"] and world["ollama"].requests[-1]["think"] == "low"
    (row,) = ledger_rows(world["home"], data["run_id"])
    assert row["thinking_tokens"] == job["thinking_tokens"]


def test_a_cut_off_answer_from_a_server_that_always_says_stop_is_never_ok(world: dict[str, Any]) -> None:
    world["ollama"].always_stop = True
    world["ollama"].script(['{"city": "Lisbon"}'] * 2)  # 3 tokens of it fit: '{"city": "Li', and "stop"
    code, data, _ = run_json(str(task_file(Path("t"), extra="max_tokens: 3\n")))
    (job,) = data["jobs"]
    assert code == 1 and job["status"] == "failed" and job["output"] is None  # Claude is cut at 3 tokens too
    rows = ledger_rows(world["home"], data["run_id"])
    assert [(r["lane"], r["outcome"]) for r in rows[:2]] == [("local", "invalid"), ("local", "invalid")]
    assert all(r["reason"].startswith("the answer was cut off at max_tokens") for r in rows)


def test_json_that_stops_mid_string_is_not_repaired_into_a_value(world: dict[str, Any]) -> None:
    world["ollama"].script(['{"city": "Lis', '{"city": "Lis'])  # json-repair would close it as "Lis"
    code, data, _ = run_json(str(task_file(Path("t"))))
    (job,) = data["jobs"]
    assert code == 0 and job["escalated"] and job["actual_model"].startswith("claude")
    rows = ledger_rows(world["home"], data["run_id"])
    assert [(r["lane"], r["outcome"]) for r in rows] == [("local", "invalid"), ("local", "invalid"), ("cloud", "ok")]
    assert job["value"] != {"city": "Lis"}
