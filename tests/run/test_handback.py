"""Hand-back: inside Claude Code the cloud is the caller, so nothing goes to the Anthropic API.

Driven end to end: the MCP server as a subprocess (the SDK's client, as tests/integrations/test_mcp.py
does) under a Claude Code session's environment, the loopback Ollama answering the local
jobs, and the loopback Anthropic server asserting that it heard nothing.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.config import load_settings
from ollama_dist.run import handback
from ollama_dist.tasks.loader import load_jobs
from tests.integrations.test_mcp import CITY, claude, connect, noisy, ollama, server_env  # noqa: F401  (fixtures)
from tests.servers.anthropic import AnthropicServer
from tests.servers.ollama import FakeOllama

REVIEW = textwrap.dedent("""\
    name: review
    kind: reasoning
    system: You are a careful reviewer.
    prompt: Explain why this design might fail under load, weighing the trade-offs.
    inputs: {text: "A single SQLite file shared by twenty writers over NFS."}
    output: {format: text}
    """)



def tasks(*docs: str) -> str:
    return "tasks:\n" + "".join(textwrap.indent("- " + d.replace("\n", "\n  ").rstrip() + "\n", "  ") for d in docs)


BOTH = tasks(CITY, REVIEW)


def session_env(home: Path, noisy_dir: Path, ollama_url: str, claude_url: str, **extra: str) -> dict[str, str]:
    return server_env(home, noisy_dir, OLLAMA_HOST=ollama_url, ANTHROPIC_BASE_URL=claude_url,
                      ANTHROPIC_API_KEY="test-key", CLAUDE_CODE_SESSION_ID="cc-session-7",
                      CLAUDE_PROJECT_DIR=str(Path.cwd()), **extra)


def by_task(jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {j["task"]: j for j in jobs}


async def test_mcp_in_a_claude_code_session_hands_back_and_calls_no_api(
        ollama: FakeOllama, claude: AnthropicServer, isolated_home: Path, noisy: Path, tmp_path: Path) -> None:
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    # the city job answers first time; the second city job (Porto) gets two invalid local answers
    ollama.script(['{"city": "Lisbon"}', "no json at all", '{"town": "Porto"}'])
    env = session_env(isolated_home, noisy, ollama.url, claude.url)
    async with connect(tmp_path, env, Path.cwd()) as wire:
        ran = await wire.call("run_tasks", {"task_yaml": BOTH})
        assert not ran.is_error, ran.content
        jobs = by_task(ran.structured_content["jobs"])
        assert jobs["city"]["status"] == "ok" and jobs["city"]["value"] == {"city": "Lisbon"}
        review = jobs["review"]
        assert review["status"] == "handed_back" and review["routed_to"] == "cloud"
        assert review["actual_model"] == "caller" and review["cost_usd"] == 0
        assert "You are a careful reviewer." in review["instructions"]
        assert "twenty writers over NFS" in review["instructions"]
        assert review["output_spec"] == {"format": "text", "schema": None, "pattern": None, "write": None}
        totals = ran.structured_content["totals"]
        assert totals["handed_back"] == 1 and totals["answered_local"] == 1 and totals["cost_usd"] == 0
        # savings: what the local lane did, against what the whole run would have cost on Claude
        assert totals["baseline_cost_usd"] == pytest.approx(
            totals["saved_usd"] + totals["handed_back_cost_usd_estimated"])
        assert 0 < totals["saved_pct"] < 100
        assert any("handed_back" in note for note in ran.structured_content["notes"])

        failed_local = await wire.call("run_tasks", {"task_yaml": CITY.replace("Lisbon", "Porto")})
        (job,) = failed_local.structured_content["jobs"]
        assert job["status"] == "handed_back" and job["routed_to"] == "local"
        assert "The local model could not" in job["instructions"] and "invalid" in job["instructions"]
        assert job["output_spec"]["format"] == "json" and job["output_spec"]["schema"]["required"] == ["city"]
        # router-status: the baseline is the whole session on Claude, handed-back jobs at their estimate
        status = (await wire.call("router_status", {})).structured_content
        assert status["jobs"] == 3 and status["handed_back"] == 2 and status["failed"] == 0
        assert status["baseline_cost_usd"] == pytest.approx(
            totals["baseline_cost_usd"] + failed_local.structured_content["totals"]["baseline_cost_usd"], abs=1e-6)
        assert status["savings_usd"] == pytest.approx(totals["saved_usd"], abs=1e-6)  # only the local answer
    assert claude.requests == []  # not one request reached the Anthropic server
    db = sqlite3.connect(isolated_home / "ledger.db")
    rows = db.execute("SELECT task, routed_to, lane, backend, model, outcome, final, cost_usd, unanswered_baseline_usd, "
                      "input_tokens, tokens_estimated, session FROM attempts WHERE outcome = 'handed_back' "
                      "ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("review", "cloud"), ("city", "local")]
    for row in rows:
        assert row[2:8] == ("cloud", "caller", "caller", "handed_back", 1, 0.0)
        # its estimate is its baseline: the whole run on Claude, which router-status must not count as saved
        assert row[8] > 0 and row[9] > 0 and row[10] == 1 and row[11] == "cc-session-7"


async def test_mcp_cloud_api_setting_sends_cloud_work_even_in_a_session(
        ollama: FakeOllama, claude: AnthropicServer, isolated_home: Path, noisy: Path, tmp_path: Path) -> None:
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\ncloud: {max_retries: 0}\nmcp: {cloud: api}\n")
    env = session_env(isolated_home, noisy, ollama.url, claude.url)
    async with connect(tmp_path, env, Path.cwd()) as wire:
        ran = await wire.call("run_tasks", {"task_yaml": REVIEW})
    (job,) = ran.structured_content["jobs"]
    assert job["status"] == "ok" and job["actual_model"] == "claude-sonnet-5-5"
    assert len(claude.calls("/v1/messages")) == 1


def test_cloud_mode_default_follows_the_session(isolated_home: Path) -> None:
    settings = load_settings()
    assert handback.cloud_mode(settings, {"CLAUDE_CODE_SESSION_ID": "x"}) == "caller"
    assert handback.cloud_mode(settings, {}) == "api"
    Path("ollama-dist.yaml").write_text("mcp: {cloud: caller}\n")
    assert handback.cloud_mode(load_settings(), {}) == "caller"


def test_cli_hand_back_prints_the_remaining_work_and_exits_0(
        ollama: FakeOllama, claude: AnthropicServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", ollama.url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    Path("tasks.yaml").write_text(tasks(CITY.replace("  format: json\n", "  format: json\n  write: out/city.json\n"),
                                        REVIEW))
    ollama.script(['{"city": "Lisbon"}'])
    result = CliRunner().invoke(app, ["run", "--hand-back", "-q", "tasks.yaml"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (left,) = data["remaining"]
    assert left["task"] == "review" and left["status"] == "handed_back" and left["instructions"]
    assert [a["task"] for a in data["answered"]] == ["city"]
    assert json.loads(Path("out/city.json").read_text()) == {"city": "Lisbon"}
    assert claude.requests == []
    both = CliRunner().invoke(app, ["run", "--hand-back", "--cloud-batch", "tasks.yaml"])
    assert both.exit_code == 2 and "do not go together" in both.output


def test_large_file_inputs_are_named_by_path_and_writes_are_given(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "big.txt").write_text("word " * 40000)
    (root / "t.yaml").write_text(textwrap.dedent("""\
        name: summarize
        prompt: "Summarize {path}: {input}"
        inputs: {files: [big.txt]}
        output: {format: json, write: "out/{stem}.json"}
        """))
    (job,) = load_jobs([root / "t.yaml"], root)
    text = handback.instructions(job, [], root)
    assert str(root / "big.txt") in text and "word word" not in text and "too large" in text
    spec = handback.output_spec(job)
    assert spec["write"] == str(root / "out" / "big.json")
    assert str(root / "out" / "big.json") in text
    assert handback.relative_to(spec["write"], root) == "out/big.json"


async def test_tools_say_how_to_use_them_and_an_unknown_tool_is_a_protocol_error(
        ollama: FakeOllama, claude: AnthropicServer, isolated_home: Path, noisy: Path, tmp_path: Path) -> None:
    import yaml
    from mcp.shared.exceptions import MCPError

    from ollama_dist.integrations.claude_code import tools as mcp_tools

    example = mcp_tools.TOOLS["run_tasks"].description.split("Example `task_yaml`: ", 1)[1]
    (job,) = load_jobs([_write(tmp_path / "ex.yaml", yaml.safe_load(f"x: {example}")["x"])], tmp_path)
    assert job.task.output.schema_ is not None  # the example in the description is a valid task
    env = session_env(isolated_home, noisy, ollama.url, claude.url)
    async with connect(tmp_path, env, Path.cwd()) as wire:
        tools = {t.name: t for t in (await wire.session.list_tools()).tools}
        assert tools["route_tasks"].annotations.read_only_hint and tools["route_tasks"].annotations.idempotent_hint
        assert not tools["run_tasks"].annotations.read_only_hint
        with pytest.raises(MCPError, match="unknown tool `nope`"):
            await wire.call("nope", {})
    from ollama_dist.integrations.claude_code import skill

    text = skill.skill_text()
    assert "mcp__ollama-dist__route_tasks" in text.split("---")[1]
    assert "convert, extract, label or rename the same way across many files" in text


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
