"""`ollama-dist run` end to end: real clients, loopback servers, the ledger checked row by row."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from tests.servers.anthropic import AnthropicServer
from tests.servers.ollama import FakeOllama, chatty, fenced, refused_url

runner = CliRunner()
SCHEMA = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama(models=("gemma3:270m",)) as server:
        yield server


@pytest.fixture
def claude() -> Iterator[AnthropicServer]:
    with AnthropicServer(key="test-key") as server:
        yield server


@pytest.fixture
def world(ollama: FakeOllama, claude: AnthropicServer, monkeypatch: pytest.MonkeyPatch,
          isolated_home: Path) -> dict[str, Any]:
    monkeypatch.setenv("OLLAMA_HOST", ollama.url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    # the embedded model is a fallback of its own; these tests are about the servers
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\ncloud: {max_retries: 2}\n")
    return {"ollama": ollama, "claude": claude, "home": isolated_home}


def task_file(folder: Path, name: str = "city", *, count: int = 1, extra: str = "") -> Path:
    texts = "\n".join(f"  - Our office moved to town number {i}." for i in range(count))
    body = textwrap.dedent(f"""\
        name: {name}
        prompt: Extract the city from this sentence. Reply with JSON only.
        output:
          format: json
          schema: {json.dumps(SCHEMA)}
        """) + extra
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"in{i}.txt").write_text(f"Our office moved from Lisbon to A, town number {i}.\n")
    body += "inputs: {files: ['in*.txt']}\n"
    path = folder / f"{name}.yaml"
    path.write_text(body)
    del texts
    return path


def run_json(*args: str) -> tuple[int, dict[str, Any], str]:
    result = runner.invoke(app, ["run", *args, "--json", "--quiet", "--root", str(Path.cwd())])
    data = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, data, result.stderr


def ledger_rows(home: Path, run_id: str | None = None) -> list[dict[str, Any]]:
    db = sqlite3.connect(home / "ledger.db")
    db.row_factory = sqlite3.Row
    sql = "SELECT * FROM attempts" + (" WHERE run_id = ?" if run_id else "") + " ORDER BY id"
    rows = [dict(r) for r in db.execute(sql, (run_id,) if run_id else ())]
    db.close()
    return rows


@pytest.mark.parametrize("answer", [fenced({"city": "Lisbon"}), chatty({"city": "Lisbon"}),
                                    '{"city": "Lisbon"}'], ids=["fenced", "chatty", "raw"])
def test_local_answers_accepted_through_the_parse_fallbacks(world: dict[str, Any], answer: str) -> None:
    world["ollama"].script([answer])
    path = task_file(Path("t"))
    code, data, err = run_json(str(path))
    assert code == 0, err
    (job,) = data["jobs"]
    assert job["status"] == "ok" and job["routed_to"] == "local" and job["actual_model"] == "gemma3:270m"
    assert job["escalated"] is False and job["attempts"] == 1
    assert json.loads(Path(job["output"]).read_text()) == {"city": "Lisbon"}
    assert world["claude"].calls("/v1/messages") == []
    body = world["ollama"].requests[0]
    assert body["stream"] is False and body["options"]["num_ctx"] >= 2048
    assert body["format"] == {**SCHEMA, "additionalProperties": False}  # closed for the grammar


def test_two_invalid_local_answers_escalate_and_no_third_local_call(world: dict[str, Any]) -> None:
    world["ollama"].script(["I think the city is Lisbon.", '{"town": "Lisbon"}', '{"city": "never"}'])
    code, data, _ = run_json(str(task_file(Path("t"))))
    assert code == 0
    (job,) = data["jobs"]
    assert job["escalated"] is True and job["routed_to"] == "local"
    assert job["actual_model"] == "claude-haiku-5-5" and job["attempts"] == 3
    assert len(world["ollama"].requests) == 2
    # the retry told the model what was wrong
    second = world["ollama"].requests[1]["messages"]
    assert "invalid" in second[-1]["content"]
    rows = ledger_rows(world["home"], data["run_id"])
    assert [(r["lane"], r["outcome"]) for r in rows] == [("local", "invalid"), ("local", "invalid"),
                                                         ("cloud", "ok")]
    assert {r["routed_to"] for r in rows} == {"local"} and rows[-1]["model"] == "claude-haiku-5-5"
    assert rows[-1]["final"] == 1 and rows[0]["final"] == 0
    sent = world["claude"].calls("/v1/messages")[0].body
    assert "temperature" not in sent and sent["output_config"]["effort"] == "low"


@pytest.mark.parametrize("fault", ["down", "stall", "busy", "http_500"])
def test_local_failures_escalate_at_once(world: dict[str, Any], fault: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = task_file(Path("t"), extra="timeout_s: 1\n")
    if fault == "down":
        monkeypatch.setenv("OLLAMA_HOST", refused_url())
    else:
        world["ollama"].fault(fault, seconds=5)
    code, data, err = run_json(str(path))
    assert code == 0, err
    (job,) = data["jobs"]
    assert job["escalated"] is True and job["status"] == "ok"
    rows = ledger_rows(world["home"], data["run_id"])
    assert rows[0]["outcome"] == "error" and rows[0]["lane"] == "local"
    expected = {"down": "unreachable", "stall": "timeout", "busy": "busy", "http_500": "bad_response"}[fault]
    assert rows[0]["reason"] == expected
    assert len(rows) == 2 and rows[1]["lane"] == "cloud"
    assert job["escalation_reason"] == expected
    assert [(t["lane"], t["outcome"], t["reason"]) for t in job["tries"]] == [("local", "error", expected),
                                                                               ("cloud", "ok", None)]


def test_rate_limited_cloud_call_waits_and_succeeds(world: dict[str, Any]) -> None:
    path = Path("r.yaml")
    path.write_text("name: why\nprompt: Why does this design trade latency for safety?\n")
    world["claude"].fail_next(429, retry_after=1)
    code, data, _ = run_json(str(path))
    assert code == 0
    assert data["jobs"][0]["routed_to"] == "cloud" and data["jobs"][0]["actual_model"] == "claude-sonnet-5-5"
    assert len(world["claude"].calls("/v1/messages")) == 2


def test_overloaded_beyond_retries_fails_with_every_reason(world: dict[str, Any]) -> None:
    path = Path("r.yaml")
    path.write_text("name: why\nprompt: Why does this design trade latency for safety?\n")
    world["claude"].fail_next(529, times=20)
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\ncloud: {max_retries: 0}\n")
    code, data, _ = run_json(str(path))
    assert code == 1
    (job,) = data["jobs"]
    assert job["status"] == "failed" and "overloaded" in job["reason"]
    rows = ledger_rows(world["home"], data["run_id"])
    assert rows[-1]["final"] == 1 and rows[-1]["outcome"] == "error"


def test_ledger_rows_match_the_json_output(world: dict[str, Any]) -> None:
    def answer(body: dict[str, Any]) -> str:  # job 1 never answers well locally
        return "no json here" if "number 1" in body["messages"][0]["content"] else json.dumps({"city": "A"})

    world["ollama"].script(answer)
    code, data, _ = run_json(str(task_file(Path("t"), count=3)))
    assert code == 0
    rows = ledger_rows(world["home"], data["run_id"])
    for job in data["jobs"]:
        mine = [r for r in rows if r["job_id"] == job["job"]]
        assert len(mine) == job["attempts"]
        assert sum(r["input_tokens"] for r in mine) == job["input_tokens"]
        assert sum(r["output_tokens"] for r in mine) == job["output_tokens"]
        assert sum(r["cost_usd"] for r in mine) == pytest.approx(job["cost_usd"])
        assert sum(r["baseline_cost_usd"] for r in mine) == pytest.approx(job["baseline_cost_usd"])
        assert mine[-1]["model"] == job["actual_model"] and mine[-1]["final"] == 1
        assert all(r["routed_to"] == job["routed_to"] for r in mine)
        assert all(r["session"] == data["session"] for r in mine)
        assert (mine[-1]["model"] != "gemma3:270m") == job["escalated"]
    totals = data["totals"]
    assert totals["jobs"] == 3 and totals["escalated"] == 1 and totals["answered_local"] == 2
    assert totals["saved_usd"] == pytest.approx(totals["baseline_cost_usd"] - totals["cost_usd"])
    assert "test-key" not in json.dumps(rows)


def test_a_second_run_is_served_from_the_ledger(world: dict[str, Any]) -> None:
    world["ollama"].script([json.dumps({"city": "A"})] * 2)
    path = task_file(Path("t"), count=2)
    assert run_json(str(path))[0] == 0
    sent = len(world["ollama"].requests)
    code, data, _ = run_json(str(path))
    assert code == 0 and len(world["ollama"].requests) == sent
    assert all(j["cache_hit"] for j in data["jobs"]) and data["totals"]["cache_hits"] == 2
    # an edited input is new work
    (Path("t") / "in0.txt").write_text("We live in Porto now.\n")
    code, data, _ = run_json(str(path))
    assert [j["cache_hit"] for j in data["jobs"]] == [False, True]


def test_no_api_key_cloud_jobs_fail_fast_local_jobs_still_run(world: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    world["ollama"].script([json.dumps({"city": "A"})])
    task_file(Path("t"))
    Path("t/why.yaml").write_text("name: why\nprompt: Why does this design trade latency for safety?\n")
    code, data, err = run_json("t")
    assert code == 1
    jobs = {j["task"]: j for j in data["jobs"]}
    assert jobs["city"]["status"] == "ok" and jobs["why"]["status"] == "failed"
    assert "ANTHROPIC_API_KEY" in jobs["why"]["reason"]
    assert err.count("ANTHROPIC_API_KEY") == 1
    assert world["claude"].requests == []


def test_dry_run_calls_no_model(world: dict[str, Any]) -> None:
    result = runner.invoke(app, ["run", str(task_file(Path("t"), count=2)), "--dry-run", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert len(rows) == 2 and all(r["estimate"]["input_tokens"] > 0 for r in rows)
    assert world["ollama"].requests == [] and world["claude"].requests == []
    assert not (world["home"] / "ledger.db").exists() or ledger_rows(world["home"]) == []


def test_bad_task_file_exits_2(world: dict[str, Any]) -> None:
    Path("bad.yaml").write_text("name: a\nprompt: P\noutput: {formt: json}\n")
    result = runner.invoke(app, ["run", "bad.yaml"])
    assert result.exit_code == 2 and "did you mean `format`" in result.stderr


def test_breaker_opens_on_slowness_and_sends_local_jobs_to_the_cloud(world: dict[str, Any]) -> None:
    Path("ollama-dist.yaml").write_text(
        "ollama: {embedded: false}\nbreaker: {p95_threshold_s: 0.05, min_samples: 2, window: 5, cooldown_s: 600}\n")
    world["ollama"].latency_s = 0.2
    world["ollama"].script([json.dumps({"city": "A"})] * 10)
    code, data, _ = run_json(str(task_file(Path("t"), count=6)))
    assert code == 0
    rows = ledger_rows(world["home"], data["run_id"])
    skipped = [r for r in rows if r["outcome"] == "skipped"]
    assert skipped and all(r["reason"] == "breaker_open" for r in skipped)
    assert len(world["ollama"].requests) < 6
    db = sqlite3.connect(world["home"] / "ledger.db")
    events = db.execute("SELECT state, reason FROM breaker_events").fetchall()
    assert events and events[0][0] == "open" and "p95" in events[0][1] or "queue" in events[0][1]


def test_an_answer_cut_off_at_max_tokens_is_never_accepted(world: dict[str, Any]) -> None:
    # json-repair would close the brackets of this cut-off answer; it must not count
    world["ollama"].script([json.dumps({"city": " ".join(f"Lisbon{i}" for i in range(50))})] * 2)
    code, data, _ = run_json(str(task_file(Path("t"), extra="max_tokens: 40\n")))
    assert code == 0
    rows = ledger_rows(world["home"], data["run_id"])
    assert [r["outcome"] for r in rows[:2]] == ["invalid", "invalid"]
    assert "cut off at max_tokens" in rows[0]["reason"] and rows[-1]["lane"] == "cloud"


def test_shadow_runs_ask_the_cloud_too_and_keep_the_local_answer(world: dict[str, Any]) -> None:
    world["ollama"].script([json.dumps({"city": "A"})] * 4)
    world["claude"].answer("*", [json.dumps({"city": "Lisbon"}), json.dumps({"city": "a"})] * 2)
    code, data, _ = run_json(str(task_file(Path("t"), count=4)), "--shadow", "1.0")
    assert code == 0
    for job in data["jobs"]:
        assert job["actual_model"] == "gemma3:270m" and job["escalated"] is False
        assert json.loads(Path(job["output"]).read_text()) == {"city": "A"}
        assert [s["outcome"] for s in job["shadow"]] == ["ok"]
    rows = ledger_rows(world["home"], data["run_id"])
    shadow = [r for r in rows if str(r["reason"]).startswith("shadow")]
    assert len(shadow) == 4 and all(r["lane"] == "cloud" and r["final"] == 0 for r in shadow)
    # compared as values: "a" is the local "A" (case does not count), "Lisbon" is not
    assert sorted(r["reason"] for r in shadow) == ["shadow: differs from the local answer"] * 2 + [
        "shadow: same answer"] * 2
    assert all(r["baseline_cost_usd"] == 0 for r in shadow)
    # a shadow answer is never served as a cached answer: the local one is
    code, again, _ = run_json(str(task_file(Path("t"), count=4)))
    assert all(j["cache_hit"] and j["actual_model"] == "gemma3:270m" for j in again["jobs"])


def test_cloud_batch_sends_cloud_jobs_through_the_batches_api(world: dict[str, Any]) -> None:
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\ncloud: {batch_poll_s: 0.05}\n")
    for i in range(3):
        Path(f"why{i}.yaml").write_text(f"name: why{i}\nprompt: Why does design {i} trade latency for safety?\n")
    world["ollama"].script([json.dumps({"city": "A"})])
    task_file(Path("t"))
    code, data, err = run_json(".", "--cloud-batch")
    assert code == 0, err
    assert len(world["claude"].calls("/v1/messages/batches")) == 1
    assert world["claude"].calls("/v1/messages") == []
    cloud = [j for j in data["jobs"] if j["routed_to"] == "cloud"]
    assert len(cloud) == 3 and all(j["status"] == "ok" for j in cloud)
    rows = [r for r in ledger_rows(world["home"], data["run_id"]) if r["lane"] == "cloud"]
    assert all(r["backend"] == "claude-batch" for r in rows)
    # half price: the batch cost is half of what the same tokens cost on the Messages API
    from ollama_dist.ledger.pricing import PriceTable, Usage

    r = rows[0]
    full = PriceTable.load().cost(r["model"], Usage(r["input_tokens"], r["output_tokens"]))
    assert r["cost_usd"] == pytest.approx(full / 2)
