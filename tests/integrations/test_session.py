"""Session truth: the SessionStart hook records the live session, and the MCP server follows it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from ollama_dist.integrations.claude_code import session
from tests.integrations.test_mcp import CITY, REPO, claude, connect, noisy, ollama, server_env  # noqa: F401  (fixtures)
from tests.servers.anthropic import AnthropicServer
from tests.servers.ollama import FakeOllama


def run_hook(payload: object, home: Path, project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OLLAMA_DIST_HOME": str(home), "CLAUDE_PROJECT_DIR": str(project), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "ollama_dist.cli", "claude", "session-hook"],
                          input=json.dumps(payload), capture_output=True, text=True, env=env, timeout=60)


async def test_after_clear_the_next_run_is_recorded_under_the_new_session(
        ollama: FakeOllama, claude: AnthropicServer, isolated_home: Path, noisy: Path, tmp_path: Path) -> None:
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    ollama.script(['{"city": "Lisbon"}', '{"city": "Lisbon"}'])
    project = Path.cwd()
    env = server_env(isolated_home, noisy, OLLAMA_HOST=ollama.url, ANTHROPIC_BASE_URL=claude.url,
                     CLAUDE_CODE_SESSION_ID="old-session", CLAUDE_PROJECT_DIR=str(project))
    async with connect(tmp_path, env, project) as wire:
        first = await wire.call("run_tasks", {"task_yaml": CITY})
        assert first.structured_content["session"] == "old-session"
        # the user types /clear: Claude Code runs the SessionStart hook with a new id
        done = run_hook({"session_id": "new-session", "source": "clear", "cwd": str(project),
                         "hook_event_name": "SessionStart"}, isolated_home, project)
        assert done.returncode == 0 and done.stdout == "", done.stderr
        second = await wire.call("run_tasks", {"task_yaml": CITY.replace("Lisbon", "Lisbon, Portugal")})
        assert second.structured_content["session"] == "new-session"
        status = await wire.call("router_status", {})
        assert status.structured_content["scope"]["session"] == "new-session"
        assert status.structured_content["jobs"] == 1
    db = sqlite3.connect(isolated_home / "ledger.db")
    assert [r[0] for r in db.execute("SELECT session FROM attempts ORDER BY id")] == ["old-session", "new-session"]
    assert session.live(isolated_home, project)["source"] == "clear"  # type: ignore[index]


def test_the_hook_never_fails_a_session_and_records_nothing_on_bad_input(isolated_home: Path) -> None:
    project = Path.cwd()
    for payload in ("not json", {"source": "startup"}, ["a list"]):
        done = run_hook(payload, isolated_home, project)
        assert done.returncode == 0 and "nothing recorded" in done.stderr
    assert session.live(isolated_home, project) is None
    assert session.live_session(isolated_home, project, "fallback") == "fallback"
    session.record(isolated_home, project, "s1", "resume")
    assert session.live_session(isolated_home, project, "fallback") == "s1"
    assert session.live_session(isolated_home, project / "other", "fallback") == "fallback"  # per project
