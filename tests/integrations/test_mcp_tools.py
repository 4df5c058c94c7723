"""The MCP tools' contract: outputSchema (every structuredContent validated with jsonschema), progress
notifications per finished job, messages that name MCP arguments, and report_answers, all over stdio
with the SDK's client against the loopback servers."""

from __future__ import annotations

import json
import os
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ollama_dist.integrations.claude_code import tools, wording
from tests.integrations.test_mcp import (  # noqa: F401  (fixtures)
    CITY,
    REPO,
    Wire,
    claude,
    connect,
    noisy,
    ollama,
    server_env,
    wire_messages,
)
from tests.run.test_handback import REVIEW, session_env, tasks
from tests.servers.anthropic import AnthropicServer
from tests.servers.ollama import FakeOllama

WRITTEN = CITY.replace("  format: json\n", "  format: json\n  write: out/city.json\n").replace("city", "town", 1)


async def checked(wire: Wire, name: str, args: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """Call a tool; its structuredContent must validate against the outputSchema it lists."""
    result = await wire.session.call_tool(name, args, **kw)  # the SDK's client checks it against the schema too
    assert not result.is_error, result.content[0].text
    jsonschema.validate(result.structured_content, tools.TOOLS[name].output_schema,
                        cls=jsonschema.Draft202012Validator)
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


def test_every_output_schema_is_a_valid_json_schema() -> None:
    for name, tool in tools.TOOLS.items():
        jsonschema.Draft202012Validator.check_schema(tool.output_schema)
        jsonschema.Draft202012Validator.check_schema(tool.input_schema)
        assert tool.output_schema["type"] == "object", name


async def test_results_conform_to_the_listed_output_schemas(
        ollama: FakeOllama, claude: AnthropicServer, isolated_home: Path, noisy: Path, tmp_path: Path) -> None:
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    long = " ".join(["Porto"] * 1500)  # a value too large to inline, and grounded: it is in the input
    big = CITY.replace("name: city", "name: big\nmax_tokens: 4000").replace("Lisbon", long)
    ollama.script(lambda body: json.dumps({"city": long}) if "Porto" in str(body) else '{"city": "Lisbon"}')
    env = session_env(isolated_home, noisy, ollama.url, claude.url)
    async with connect(tmp_path, env, Path.cwd()) as wire:
        listed = {t.name: t for t in (await wire.session.list_tools()).tools}
        assert {n: t.output_schema for n, t in listed.items()} == {n: t.output_schema for n, t in tools.TOOLS.items()}
        # never deferred behind Claude Code's tool search, whatever the server entry says
        assert all(t.meta == {"anthropic/alwaysLoad": True} for t in listed.values())
        routed = await checked(wire, "route_tasks", {"task_yaml": tasks(CITY, REVIEW)})
        assert [j["target"] for j in routed["jobs"]] == ["local", "cloud"]
        ran = await checked(wire, "run_tasks", {"task_yaml": tasks(CITY, REVIEW, big)})
        status = {j["task"]: j["status"] for j in ran["jobs"]}
        assert status == {"city": "ok", "review": "handed_back", "big": "ok"}
        assert "value_omitted" in next(j for j in ran["jobs"] if j["task"] == "big")
        await checked(wire, "router_status", {})
        await checked(wire, "router_status", {"since": "1h"})
        review = next(j["job"] for j in ran["jobs"] if j["task"] == "review")
        answered = await checked(wire, "report_answers", {"run_id": ran["run_id"], "answers": [
            {"job": review, "answer": "Twenty writers on one SQLite file over NFS contend for its lock."},
            {"job": "nope", "answer": "x"}]})
        assert [a["status"] for a in answered["answers"]] == ["recorded", "not_handed_back"]
    assert claude.requests == []


async def test_progress_is_notified_per_finished_job_only_when_asked(
        ollama: FakeOllama, claude: AnthropicServer, isolated_home: Path, noisy: Path, tmp_path: Path) -> None:
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    three = tasks(CITY, CITY.replace("name: city", "name: city2").replace("Lisbon", "Porto"), REVIEW)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    env = session_env(isolated_home, noisy, ollama.url, claude.url)
    async with connect(tmp_path, env, Path.cwd()) as wire:
        ollama.script(['{"city": "Lisbon"}', '{"city": "Porto"}'])
        await checked(wire, "run_tasks", {"task_yaml": three}, progress_callback=on_progress)
        assert [p for p, _, _ in seen] == [1, 2, 3] and {t for _, t, _ in seen} == {3}
        messages = " | ".join(m or "" for _, _, m in seen)
        assert re.search(r"\bcity:\w+: ok \(gemma3:270m\)", messages), messages
        assert re.search(r"\breview:\w+: handed_back \(caller\)", messages), messages
        before = len(wire_messages(wire.stdout))
        ollama.script(['{"city": "Faro"}'])
        await checked(wire, "run_tasks", {"task_yaml": CITY.replace("Lisbon", "Faro")})  # no progress token
        after = wire_messages(wire.stdout)[before:]
    sent = [m for m in wire_messages(wire.stdout) if m.get("method") == "notifications/progress"]
    assert len(sent) == 3 and not any(m.get("method") == "notifications/progress" for m in after)


def test_every_rewritten_phrase_is_one_the_package_says() -> None:
    source = "\n".join(p.read_text() for p in (REPO / "ollama_dist").rglob("*.py")
                       if p.name != "wording.py")
    for said, meant in wording.REWRITES:
        assert said in source, f"{said!r} is no longer said anywhere: update ollama_dist/integrations/claude_code/wording.py"
        assert wording.flags(meant) == [], meant


async def test_messages_reaching_an_mcp_caller_name_arguments_not_flags(
        ollama: FakeOllama, claude: AnthropicServer, isolated_home: Path, noisy: Path, tmp_path: Path) -> None:
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    (tmp_path / "outside.txt").write_text("secret")
    outside_input = CITY.replace('inputs: {text: "Our office moved to Lisbon last spring."}',
                                 "inputs: {files: [../outside.txt]}")
    outside_write = WRITTEN.replace("out/city.json", "../pwned.json")
    env = session_env(isolated_home, noisy, ollama.url, claude.url)
    texts = []
    async with connect(tmp_path, env, Path.cwd()) as wire:
        for name, args, expect in [
            ("run_tasks", {"task_yaml": outside_input}, "an MCP caller cannot read outside it"),
            ("route_tasks", {"task_yaml": outside_write}, "write templates must stay inside the project directory"),
            ("router_status", {"since": "later"}, "argument `since`: cannot read"),
            ("router_status", {"since": "99999999w"}, "argument `since`: 99999999w reaches back past any date"),
        ]:
            result = await wire.call(name, args)
            assert result.is_error and expect in result.content[0].text, result.content[0].text
            texts.append(result.content[0].text)
        # an output edited since ollama-dist wrote it is kept, and the reason says what the caller can do
        ollama.script(['{"city": "Lisbon"}'])
        first = await checked(wire, "run_tasks", {"task_yaml": WRITTEN})
        assert first["jobs"][0]["status"] == "ok"
        Path("out/city.json").write_text('{"city": "Lisbon, edited"}')
        kept = await checked(wire, "run_tasks", {"task_yaml": WRITTEN})
        reason = kept["jobs"][0]["reason"]
        assert "delete the file, or restore what ollama-dist wrote" in reason
        texts += [reason, *kept["notes"]]
    for text in texts:
        assert wording.flags(text) == [], text
    assert json.loads(Path("out/city.json").read_text()) == {"city": "Lisbon, edited"}


async def test_a_rerun_hands_back_only_what_the_caller_has_not_answered(
        ollama: FakeOllama, claude: AnthropicServer, isolated_home: Path, noisy: Path, tmp_path: Path) -> None:
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    # three jobs the local model cannot answer: all handed back
    work = tasks(WRITTEN, REVIEW, CITY.replace("name: city", "name: port").replace("Lisbon", "Porto"))
    ollama.script(["nope"] * 6)
    env = session_env(isolated_home, noisy, ollama.url, claude.url)
    async with connect(tmp_path, env, Path.cwd()) as wire:
        first = await checked(wire, "run_tasks", {"task_yaml": work})
        assert [j["status"] for j in first["jobs"]] == ["handed_back"] * 3
        assert first["jobs"][0]["output_spec"]["write"] == "out/city.json"
        # the caller writes one answer where output_spec.write says, and reports one (a bad one first)
        Path("out").mkdir()
        Path("out/city.json").write_text('{"city": "Lisbon"}\n')
        port = next(j["job"] for j in first["jobs"] if j["task"] == "port")
        refused = await checked(wire, "report_answers", {"run_id": first["run_id"], "answers": [
            {"job": port, "answer": {"town": "Porto"}}]})
        assert refused["answers"][0]["status"] == "invalid" and "city" in refused["answers"][0]["reason"]
        done = await checked(wire, "report_answers", {"run_id": first["run_id"], "answers": [
            {"job": port, "answer": {"city": "Porto"}}]})
        assert done["answers"][0]["status"] == "recorded" and done["answers"][0]["output"]
        ollama.script(["nope"] * 2)
        again = await checked(wire, "run_tasks", {"task_yaml": work})
        by_task = {j["task"]: j for j in again["jobs"]}
        assert by_task["town"]["status"] == "ok" and by_task["town"]["cache_hit"] is True
        assert by_task["town"]["value"] == {"city": "Lisbon"}
        assert by_task["port"]["status"] == "ok" and by_task["port"]["value"] == {"city": "Porto"}
        assert by_task["review"]["status"] == "handed_back"  # not answered yet: handed back again
        assert again["totals"]["handed_back"] == 1
        # the caller's answers, served again, count at the hand-back's estimate, as any cache hit does
        assert again["totals"]["cache_hits"] == 2 and again["totals"]["answered_baseline_usd"] > 0
        assert again["totals"]["saved_usd"] == again["totals"]["answered_baseline_usd"]
        # a run_id this server did not hand back from is refused, naming the argument
        unknown = await wire.call("report_answers", {"run_id": "r-unknown", "answers": [{"job": "x", "answer": 1}]})
        assert unknown.is_error and "argument `run_id`" in unknown.content[0].text
    assert claude.requests == [] and len(ollama.requests) == 4  # the re-run asked the local model nothing


def test_an_output_file_older_than_the_hand_back_is_not_the_callers_answer(
        ollama: FakeOllama, claude: AnthropicServer, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ollama_dist.cli import app

    monkeypatch.setenv("OLLAMA_HOST", ollama.url)
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    Path("t.yaml").write_text(tasks(WRITTEN, REVIEW))
    Path("out").mkdir()
    Path("out/city.json").write_text('{"city": "stale"}')
    old = time.time() - 3600
    os.utime("out/city.json", (old, old))
    ollama.script(["nope"] * 4)
    runner = CliRunner()
    first = json.loads(runner.invoke(app, ["run", "--hand-back", "-q", "t.yaml"]).stdout)
    assert sorted(j["task"] for j in first["remaining"]) == ["review", "town"]
    again = json.loads(runner.invoke(app, ["run", "--hand-back", "-q", "t.yaml"]).stdout)
    assert sorted(j["task"] for j in again["remaining"]) == ["review", "town"]  # the stale file proves nothing
    Path("out/city.json").write_text(textwrap.dedent('{"city": "Lisbon"}'))  # the caller's answer, now
    third = json.loads(runner.invoke(app, ["run", "--hand-back", "-q", "t.yaml"]).stdout)
    assert [j["task"] for j in third["remaining"]] == ["review"]
    assert [a["task"] for a in third["answered"]] == ["town"]
    assert claude.requests == []
