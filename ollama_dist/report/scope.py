"""Which attempts `router-status` reads: a session, a span of time, or all of them.

One explicit choice, else the current session (OLLAMA_DIST_SESSION, CLAUDE_CODE_SESSION_ID),
else the latest run's session.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from ollama_dist.errors import InputError

if TYPE_CHECKING:
    import sqlite3

ScopeKind = Literal["session", "since", "all"]
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


@dataclass(frozen=True)
class Scope:
    kind: ScopeKind
    session: str | None = None
    since: float | None = None
    label: str = ""

    def where(self, alias: str = "") -> tuple[str, tuple[object, ...]]:
        """The SQL condition (and its parameters) that keeps this scope's attempts."""
        col = f"{alias}." if alias else ""
        if self.kind == "session":
            return f"{col}session = ?", (self.session,)
        if self.kind == "since":
            return f"{col}ts >= ?", (self.since,)
        return "1", ()

    def index_hint(self) -> str:
        """A session's rows are few: read them through the session index, never by walking
        a whole lane of the latency index (the planner has no statistics to know that)."""
        return " INDEXED BY attempts_session" if self.kind == "session" else ""

    def as_json(self) -> dict[str, object]:
        since = datetime.fromtimestamp(self.since).isoformat(timespec="seconds") if self.since else None
        return {"kind": self.kind, "session": self.session, "since": since, "label": self.label}


def parse_since(text: str, now: float) -> float:
    """`7d`, `12h`, `30m`, `2w`, `90s` before `now`, or a local date/time (`2026-11-01`)."""
    match = _SINCE.match(text)
    if match:
        since = now - float(match.group(1)) * _UNIT_S[match.group(2)]
        try:
            datetime.fromtimestamp(since)  # a date this platform can show
        except (OverflowError, OSError, ValueError):
            raise InputError(f"--since {text.strip()} reaches back past any date",
                             hint="give a shorter span (or --all for the whole ledger)") from None
        return since
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except (ValueError, OverflowError, OSError):
        raise InputError(f"cannot read --since {text!r}",
                         hint="use a duration like 7d, 12h, 30m, 2w or a date like 2026-11-01") from None


def resolve_scope(conn: sqlite3.Connection | None, *, session: str | None = None, since: str | None = None,
                  all_: bool = False, env: Mapping[str, str] | None = None, now: float | None = None) -> Scope:
    """The attempts to summarise: one explicit choice, else the current session
    (OLLAMA_DIST_SESSION, CLAUDE_CODE_SESSION_ID), else the latest run's session."""
    chosen = [name for name, value in (("--session", session), ("--since", since), ("--all", all_)) if value]
    if len(chosen) > 1:
        raise InputError(f"{' and '.join(chosen)} exclude each other", hint="pick one scope")
    env = os.environ if env is None else env
    now = time.time() if now is None else now
    if all_:
        return Scope("all", label="all sessions")
    if since:
        return Scope("since", since=parse_since(since, now), label=f"since {since}")
    if session:
        return Scope("session", session=session, label=f"session {session}")
    current = env.get("OLLAMA_DIST_SESSION") or env.get("CLAUDE_CODE_SESSION_ID")
    if current:
        return Scope("session", session=current, label=f"current session {current}")
    latest = _latest_session(conn) if conn is not None else None
    label = f"latest session {latest}" if latest else "the latest session (none yet)"
    return Scope("session", session=latest, label=label)


def _latest_session(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT session FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
    if row is None:
        row = conn.execute("SELECT session FROM attempts ORDER BY ts DESC LIMIT 1").fetchone()
    return str(row[0]) if row else None
