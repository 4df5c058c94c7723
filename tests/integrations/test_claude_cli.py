"""The real path, end to end: the real `claude` CLI against the loopback Anthropic server, with the
skill, hook, status line and MCP server that `ollama-dist claude install` writes.

The loopback server plays the model: asked with the `mcp__ollama-dist__run_tasks` tool on offer
and no tool result yet, it calls the tool (``AnthropicServer.use_tools``); Claude Code runs it
through `ollama-dist mcp`, whose local lane is the loopback Ollama. Every request the Anthropic
server sees must come from Claude Code itself (its `claude-cli/` user agent, and the turns of
the conversation): ollama-dist sends nothing there, the cloud job comes back to the caller.

Skipped where the CLI is not installed (npm install -g @anthropic-ai/claude-code).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ollama_dist.integrations.claude_code import session, skill
from tests.integrations.test_mcp import REPO
from tests.run.test_handback import BOTH, CITY
from tests.servers.anthropic import AnthropicServer, tool_results
from tests.servers.ollama import FakeOllama

CLAUDE = shutil.which("claude")
pytestmark = pytest.mark.skipif(CLAUDE is None, reason="the real `claude` CLI is not installed "
                                "(npm install -g @anthropic-ai/claude-code)")
KEY = "sk-ant-test-loopback-cli"
RUN_TOOL = "mcp__ollama-dist__run_tasks"


@dataclass
class World:
    project: Path
    claude_home: Path
    home: Path
    anthropic: AnthropicServer
    ollama: FakeOllama

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "HOME": str(self.claude_home), "ANTHROPIC_BASE_URL": self.anthropic.url,
                "ANTHROPIC_API_KEY": KEY, "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "PYTHONPATH": str(REPO), "OLLAMA_DIST_HOME": str(self.home), "OLLAMA_HOST": self.ollama.url,
                "TERM": "xterm-256color"}

    def attempts(self) -> list[tuple[Any, ...]]:
        if not (self.home / "ledger.db").exists():
            return []
        db = sqlite3.connect(self.home / "ledger.db")
        try:
            return db.execute("SELECT session, task, lane, backend, outcome FROM attempts ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # created a moment ago, its schema not yet in place
            return []
        finally:
            db.close()


def calls_run_tasks(task_yaml: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], Any]:
    """The model's plan: call run_tasks once per user turn, then answer in text."""
    def plan(body: dict[str, Any]) -> list[dict[str, Any]] | None:
        offered = {t.get("name") for t in body.get("tools") or []}
        last = body["messages"][-1] if body.get("messages") else {}
        if RUN_TOOL not in offered or tool_results({"messages": [last]}):
            return None
        return [{"name": RUN_TOOL, "input": {"task_yaml": task_yaml(body)}}]
    return plan


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    project, claude_home, home = tmp_path / "project", tmp_path / "claude-home", tmp_path / "od-home"
    for folder in (project, claude_home, home):
        folder.mkdir()
    (project / "ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    command = [sys.executable, "-m", "ollama_dist.cli", "mcp"]  # this checkout, not an installed ollama-dist
    report = skill.install(skill.Target("project", project, user=claude_home), home, mcp=True, command=command)
    assert any(line.startswith("statusline: added") for line in report.lines), report.lines
    with AnthropicServer(key=KEY) as anthropic, FakeOllama(models=("gemma3:270m",)) as ollama:
        ollama.script(lambda body: '{"city": "Lisbon"}')
        yield World(project, claude_home, home, anthropic, ollama)


def test_claude_p_hands_back_the_cloud_job_and_the_local_model_answers_the_other(world: World) -> None:
    world.anthropic.use_tools("*", calls_run_tasks(lambda body: BOTH))
    done = subprocess.run([CLAUDE or "claude", "-p", "Extract the city and review the design, with ollama-dist.",
                           "--output-format", "stream-json", "--verbose", "--allowedTools", RUN_TOOL],
                          cwd=world.project, env=world.env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    init = next(e for e in events if e.get("subtype") == "init")
    assert {"name": "ollama-dist", "status": "connected"} in init["mcp_servers"]
    cc_session = init["session_id"]
    # what Claude Code handed back to the model: the tool result, as the next request carries it
    sent = world.anthropic.calls("/v1/messages")
    results = [r for req in sent for r in tool_results(req.body)]
    (result,) = results
    content = result["content"] if isinstance(result["content"], str) else result["content"][0]["text"]
    data = json.loads(content)
    jobs = {j["task"]: j for j in data["jobs"]}
    assert jobs["city"]["status"] == "ok" and jobs["city"]["value"] == {"city": "Lisbon"}
    assert jobs["city"]["actual_model"] == "gemma3:270m"
    assert jobs["review"]["status"] == "handed_back" and "twenty writers over NFS" in jobs["review"]["instructions"]
    assert data["session"] == cc_session and data["totals"]["handed_back"] == 1
    # every request the Anthropic server saw is one of Claude Code's own turns: none from ollama-dist
    assert len(sent) == 2 and all(r.headers.get("user-agent", "").startswith("claude-cli/") for r in sent)
    assert all(r.body["model"] == sent[0].body["model"] for r in sent)
    assert world.attempts() == [(cc_session, "review", "cloud", "caller", "handed_back"),
                                (cc_session, "city", "local", "ollama", "ok")]
    assert len(world.ollama.requests) == 1
    # the SessionStart hook install wrote ran in the real CLI and recorded the live session
    live = session.live(world.home, world.project)
    assert live is not None and live["session_id"] == cc_session and live["source"] == "startup"


def _interactive_settings(world: World) -> None:
    """What a user clicks through once: onboarding, trusting the folder, the API key, the project's MCP server."""
    state = {"hasCompletedOnboarding": True, "theme": "dark",
             "customApiKeyResponses": {"approved": [KEY[-20:]], "rejected": []},
             "projects": {str(world.project): {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}}}
    (world.claude_home / ".claude.json").write_text(json.dumps(state))
    local = world.project / ".claude" / "settings.local.json"
    settings = json.loads(local.read_text())
    local.write_text(json.dumps({**settings, "enabledMcpjsonServers": ["ollama-dist"]}))


ESCAPES = re.compile(r"\x1b(?:\[[0-9;?>=]*[A-Za-z]|\][^\x07]*\x07|[78=>])")


def screen(child: Any) -> str:
    """Everything the CLI drew so far, without its terminal escapes."""
    return ESCAPES.sub("", child.logfile_read.getvalue())


def seen(child: Any, text: str) -> bool:
    """Whether the CLI drew `text` (it often moves the cursor instead of printing a space)."""
    return re.sub(r"\s", "", text) in re.sub(r"\s", "", screen(child))


def _wait(child: Any, done: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    import pexpect

    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; screen: {screen(child)[-1500:]!r}")
        try:
            child.expect(pexpect.TIMEOUT, timeout=0.5)  # keep reading the screen, so the CLI never blocks on it
        except pexpect.EOF as exc:
            raise AssertionError(f"claude exited while waiting for {what}") from exc


def mcp_servers(world: World) -> dict[int, str | None]:
    """The running `ollama-dist mcp` processes of this world: pid -> the CLAUDE_CODE_SESSION_ID they started with."""
    found: dict[int, str | None] = {}
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            env = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
        except OSError:
            continue
        if b"ollama_dist.cli" in argv and b"mcp" in argv and env.get(b"OLLAMA_DIST_HOME") == str(world.home).encode():
            sid = env.get(b"CLAUDE_CODE_SESSION_ID")
            found[int(proc.name)] = sid.decode() if sid else None
    return found


def _say(child: Any, text: str) -> None:
    child.send(text)
    time.sleep(0.5)
    child.send("\r")


def test_after_clear_in_the_real_cli_the_next_runs_savings_land_under_the_new_session(world: World) -> None:
    pexpect = pytest.importorskip("pexpect")
    _interactive_settings(world)
    # a new input after /clear, so its answer is the local model's, not a cache hit
    after_clear = CITY.replace("Lisbon", "Lisbon, Portugal")
    world.anthropic.use_tools("*", calls_run_tasks(lambda body: after_clear if world.attempts() else CITY))
    child = pexpect.spawn(CLAUDE or "claude", ["--allowedTools", RUN_TOOL], cwd=str(world.project), env=world.env(),
                          dimensions=(45, 160), encoding="utf-8", timeout=5)
    child.logfile_read = io.StringIO()
    try:
        _wait(child, lambda: session.live(world.home, world.project) is not None, "the SessionStart hook")
        first = session.live(world.home, world.project)
        assert first is not None and first["source"] == "startup"
        _wait(child, lambda: seen(child, "no jobs yet · local up (ollama)"), "the status line", 60)
        # the REPL connects project servers in the background (alwaysLoad blocks only `claude -p`): a prompt
        # typed at once can go out before the tools are listed, so wait as a user would, with /mcp
        _say(child, "/mcp")
        _wait(child, lambda: seen(child, "· 4 tools"), "the MCP server to connect")
        child.send("\x1b")
        time.sleep(1)
        _say(child, "Extract the city with ollama-dist")
        _wait(child, lambda: len(world.attempts()) == 1, "the first run")
        servers = mcp_servers(world)
        assert list(servers.values()) == [first["session_id"]], servers
        _say(child, "/clear")
        _wait(child, lambda: (session.live(world.home, world.project) or {}).get("source") == "clear", "/clear")
        second = session.live(world.home, world.project)
        assert second is not None and second["session_id"] != first["session_id"]
        _say(child, "Extract the next city with ollama-dist")
        _wait(child, lambda: len(world.attempts()) == 2, "the run after /clear")
        assert mcp_servers(world) == servers  # the same server, still started with the old session id
    except AssertionError as exc:
        offered = [[t.get("name") for t in r.body.get("tools") or [] if "ollama" in str(t.get("name"))]
                   for r in world.anthropic.requests]
        raise AssertionError(f"{exc}\n(ollama-dist tools offered per request: {offered})") from None
    finally:
        child.terminate(force=True)
    sessions = [row[0] for row in world.attempts()]
    assert sessions == [first["session_id"], second["session_id"]]  # the server outlived /clear; the savings moved
    from ollama_dist.config import load_settings
    from ollama_dist.report.status import router_status

    settings = load_settings(world.project, {"OLLAMA_DIST_HOME": str(world.home)})
    after = router_status(settings, session=second["session_id"])
    assert after.totals.jobs == 1 and after.totals.local == 1 and after.totals.tokens_saved > 0
    assert after.savings_usd > 0
    # what the status line command prints for each session (Claude Code runs it with this JSON; its redraw
    # on the screen is a diff of cursor moves, so the screen itself only proved the first line above)
    from ollama_dist.integrations.claude_code import statusline

    for sid in (first["session_id"], second["session_id"]):
        given = json.dumps({"session_id": sid, "workspace": {"project_dir": str(world.project)}})
        text = statusline.render(given, {"OLLAMA_DIST_HOME": str(world.home), "OLLAMA_HOST": world.ollama.url},
                                 world.project)
        assert text.startswith("ollama-dist · 1 local · ") and "tokens saved" in text, text
    assert all(r.headers.get("user-agent", "").startswith("claude-cli/") for r in world.anthropic.requests)
