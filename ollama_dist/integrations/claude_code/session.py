"""Session truth: which Claude Code session is live in a project, so savings follow /clear.

A running MCP server keeps the `CLAUDE_CODE_SESSION_ID` it was started with, and
Claude Code's `tools/call` carries no session id; after `/clear` (a new session id) or
a resume, runs would land in the old session. `ollama-dist claude install` therefore
adds a `SessionStart` hook running `ollama-dist claude session-hook`: Claude Code hands
it `{"session_id", "source": "startup"|"clear"|"resume"|"compact", "cwd", ...}` on
stdin, and it records that in `claude/sessions/<project key>.json` in the ollama-dist
home. The MCP server reads it on every call (`live_session`), falling back to the id
it was started with.

Two Claude Code sessions open in one project share the file: the last one started wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HOOK_COMMAND = "ollama-dist claude session-hook"


def session_file(home: Path, project: Path) -> Path:
    key = hashlib.sha256(str(project.resolve()).encode()).hexdigest()[:16]
    return home / "claude" / "sessions" / f"{key}.json"


def record(home: Path, project: Path, session_id: str, source: str | None) -> Path:
    """Write the live session of `project` (atomically: a reader sees the old or the new one)."""
    path = session_file(home, project)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"session_id": session_id, "source": source, "project": str(project.resolve()), "ts": time.time()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def live(home: Path, project: Path) -> dict[str, Any] | None:
    """What the hook last recorded for `project`, or None."""
    try:
        data = json.loads(session_file(home, project).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("session_id"), str) or not data["session_id"]:
        return None
    return data


def live_session(home: Path, project: Path, fallback: str) -> str:
    """The session a run in `project` belongs to now: the hook's record, else `fallback`."""
    data = live(home, project)
    return str(data["session_id"]) if data else fallback


def hook(stdin: str, env: Mapping[str, str], home: Path, cwd: Path) -> str:
    """Handle one SessionStart hook call; returns what to say on stderr (the hook never fails a session)."""
    try:
        payload = json.loads(stdin or "{}")
    except ValueError:
        return "ollama-dist session-hook: stdin is not JSON; nothing recorded"
    if not isinstance(payload, dict) or not isinstance(payload.get("session_id"), str):
        return "ollama-dist session-hook: no session_id on stdin; nothing recorded"
    project = Path(env.get("CLAUDE_PROJECT_DIR") or payload.get("cwd") or cwd)
    source = payload.get("source")
    try:
        record(home, project, payload["session_id"], source if isinstance(source, str) else None)
    except OSError as exc:
        return f"ollama-dist session-hook: cannot record the session under {home}: {exc.strerror}"
    return ""


def hook_command() -> None:
    """SessionStart hook for Claude Code: record the live session id (stdin JSON) for the MCP server."""
    from ollama_dist.config import load_settings

    settings = load_settings()
    said = hook(sys.stdin.read(), os.environ, settings.home, Path.cwd())
    if said:
        sys.stderr.write(said + "\n")
