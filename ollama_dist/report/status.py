"""`router-status`: does routing pay, and is it healthy? Figures from the ledger.

This module reads them (scope, queries, the command); ``status_figures`` holds the
values they fill (RouterStatus and its parts) and the warnings drawn from them.

Every figure is an SQL aggregate over indexed columns (migration 0003): one pass
over a covering index groups the attempts by task, routed lane, answering lane,
outcome and finality, and Python folds those few hundred groups into the totals
and the per-task figures. Percentiles walk a partial index with LIMIT/OFFSET,
escalation reasons and the rework signal use index lookups, days are one range
query each. A million attempts are summarised in well under a second
(`bench/status_bench.py`).

Definitions (a job is one run_id + job_id with a final attempt):
- local / cloud: jobs answered on that lane (cache hits by the lane that answered first).
- escalated: jobs routed local whose final attempt ran on the cloud (cache hits aside);
  escalation_rate = escalated / jobs routed local (cache hits aside).
- tokens_saved: input + output tokens of the jobs answered locally, which would
  otherwise have been sent to Claude (counted by the local tokenizer).
- rework: jobs answered again (not from the cache) when a different run had answered
  the same task and input less than `rework_window_s` before: a follow-up signal.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ollama_dist.errors import InputError
from ollama_dist.ledger.reasons import invalid_kind_sql
from ollama_dist.report.figures import (
    REWORK_WINDOW_S,
    BreakerView,
    Counts,
    Day,
    Opening,
    RouterStatus,
    empty_status,
    warnings,
    with_trust,
)

if TYPE_CHECKING:
    import sqlite3
    from concurrent.futures import Future, ThreadPoolExecutor

    from ollama_dist.config import Settings

ScopeKind = Literal["session", "since", "all"]
LANES = ("local", "cloud")
TIMED = "outcome IN ('ok', 'invalid', 'error')"  # must read as migration 0003's partial index
TREND_DAYS = 7
RECENT_OPENINGS = 5
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


# ----------------------------------------------------------------------------- scope


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


# ----------------------------------------------------------------------------- figures


def summarize(conn: sqlite3.Connection, scope: Scope, *, cooldown_s: float, now: float | None = None,
              by_day: bool = False, rework_window_s: float = REWORK_WINDOW_S) -> RouterStatus:
    """Every router-status figure for `scope`, from a ledger connection."""
    now = time.time() if now is None else now
    if scope.kind == "session" and scope.session is None:
        return replace(empty_status(scope, cooldown_s=cooldown_s, ledger_found=True),
                       breaker=breaker_view(conn, scope, cooldown_s=cooldown_s, now=now))
    with _Background(conn, scope, rework_window_s) as pending_rework:
        totals, tasks = task_counts(conn, scope)
        all_days = days(conn, scope, last=None if by_day else TREND_DAYS)
        status = RouterStatus(
            scope=scope,
            totals=totals,
            tasks=tasks,
            escalation_reasons=escalation_reasons(conn, scope) if totals.escalated else {},
            p50_latency_s=percentiles(conn, scope, totals.timed, 0.50),
            p95_latency_s=percentiles(conn, scope, totals.timed, 0.95),
            rework=pending_rework.result(),
            rework_window_s=rework_window_s,
            breaker=breaker_view(conn, scope, cooldown_s=cooldown_s, now=now),
            days=all_days if by_day else (),
        )
    return replace(status, warnings=tuple(warnings(status, all_days[-TREND_DAYS:])))


class _Background:
    """The rework count (one pass of its own over another index) on a second connection
    in a worker thread while the other figures are read: SQLite lets go of the GIL and
    WAL lets readers run side by side. A session's few rows, or a database without a
    file, are counted in line."""

    def __init__(self, conn: sqlite3.Connection, scope: Scope, window_s: float) -> None:
        self.conn, self.scope, self.window_s = conn, scope, window_s
        files = [row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
        self.path = files[0] if files and files[0] and scope.kind != "session" else None
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future[int] | None = None

    def __enter__(self) -> _Background:
        if self.path is not None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router-status")
            self._future = self._pool.submit(self._count, self.path)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _count(self, path: str) -> int:
        from ollama_dist.ledger.store import open_reader

        db = open_reader(Path(path))
        try:
            return rework(db, self.scope, window_s=self.window_s)
        finally:
            db.close()

    def result(self) -> int:
        if self._future is not None:
            return self._future.result()
        return rework(self.conn, self.scope, window_s=self.window_s)


def task_counts(conn: sqlite3.Connection, scope: Scope) -> tuple[Counts, dict[str, Counts]]:
    """One pass over the covering index `attempts_status`: a few hundred groups, folded here."""
    where, params = scope.where()
    rows = conn.execute(
        "SELECT task, routed_to, lane, outcome, final, COUNT(*), TOTAL(cost_usd), TOTAL(baseline_cost_usd), "
        f"TOTAL(input_tokens + output_tokens) FROM attempts WHERE {where} "
        "GROUP BY task, routed_to, lane, outcome, final", params).fetchall()
    totals, tasks = Counts(), dict[str, Counts]()
    for task, *group in rows:
        totals.add(*group)
        tasks.setdefault(task, Counts()).add(*group)
    return totals, tasks


def percentiles(conn: sqlite3.Connection, scope: Scope, counts: Mapping[str, int], q: float) -> dict[str, float]:
    """Nearest-rank percentile `q` of the answered or failed calls per lane, walking the
    partial index `attempts_latency` from whichever end is nearer."""
    where, params = scope.where()
    found: dict[str, float] = {}
    for lane in LANES:
        n = counts.get(lane, 0)
        if not n:
            continue
        rank = max(1, math.ceil(q * n))
        from_top = n - rank < rank - 1
        order, offset = ("DESC", n - rank) if from_top else ("ASC", rank - 1)
        row = conn.execute(
            f"SELECT latency_s FROM attempts{scope.index_hint()} WHERE lane = ? AND {TIMED} AND {where} "
            f"ORDER BY latency_s {order} LIMIT 1 OFFSET ?", (lane, *params, offset)).fetchone()
        if row is not None:
            found[lane] = float(row[0])
    return found


def escalation_reasons(conn: sqlite3.Connection, scope: Scope) -> dict[str, int]:
    """Why each escalated job left the local lane: the outcome of its last local attempt (invalid
    as `ungrounded`, `disagree`, `cut_off` or `invalid`; or the error / skip reason: unreachable,
    timeout, busy, breaker_open...)."""
    where, params = scope.where("e")
    # ORDER BY keeps the subquery from being flattened (and the lookup from running twice).
    rows = conn.execute(
        "SELECT COALESCE(why, 'no_local_attempt'), COUNT(*) FROM (SELECT ("
        f"  SELECT CASE WHEN l.outcome = 'invalid' THEN {invalid_kind_sql('l.reason')} "
        "ELSE COALESCE(l.reason, l.outcome) END"
        "  FROM attempts AS l INDEXED BY attempts_left_local WHERE l.lane = 'local' AND l.outcome != 'ok'"
        "  AND l.run_id = e.run_id AND l.job_id = e.job_id ORDER BY l.attempt DESC LIMIT 1"
        f") AS why FROM attempts AS e{scope.index_hint() or ' INDEXED BY attempts_escalated'} "
        "WHERE e.final = 1 AND e.routed_to = 'local' "
        f"AND e.lane = 'cloud' AND e.outcome != 'cache_hit' AND {where} ORDER BY 1) GROUP BY 1",
        params).fetchall()
    return {str(reason): int(n) for reason, n in rows}


def rework(conn: sqlite3.Connection, scope: Scope, *, window_s: float = REWORK_WINDOW_S) -> int:
    """Jobs answered again (not from the cache) within `window_s` of another run's
    answer to the same task and input."""
    where, params = scope.where("a")
    # `final = 1 AND outcome != 'cache_hit'`: the rows of the partial index attempts_answers
    earlier = ("EXISTS (SELECT 1 FROM attempts AS b INDEXED BY attempts_answers WHERE b.final = 1 "
               "AND b.outcome != 'cache_hit' AND b.task = a.task AND b.input_hash = a.input_hash "
               "AND b.ts < a.ts AND b.ts >= a.ts - ? AND b.run_id != a.run_id)")
    mine = "a.final = 1 AND a.outcome != 'cache_hit'"
    if scope.kind == "session":  # few rows: look each one up
        sql = f"SELECT COUNT(*) FROM attempts AS a{scope.index_hint()} WHERE {mine} AND {where} AND {earlier}"
        return int(conn.execute(sql, (*params, window_s)).fetchone()[0])
    # Only a task+input answered at least twice can be rework: find those in one
    # ordered pass over the narrow index, then look up their answers.
    lower = (scope.since or 0.0) - window_s if scope.kind == "since" else None
    bound = " AND ts >= ?" if lower is not None else ""
    sql = ("WITH pairs AS (SELECT task, input_hash FROM attempts INDEXED BY attempts_answers "
           f"WHERE final = 1 AND outcome != 'cache_hit'{bound} GROUP BY task, input_hash HAVING COUNT(*) > 1) "
           "SELECT COUNT(*) FROM pairs CROSS JOIN attempts AS a INDEXED BY attempts_answers "
           f"ON a.task = pairs.task AND a.input_hash = pairs.input_hash WHERE {mine} AND {where} AND {earlier}")
    args = ((lower,) if lower is not None else ()) + params + (window_s,)
    return int(conn.execute(sql, args).fetchone()[0])


def days(conn: sqlite3.Connection, scope: Scope, *, last: int | None = None) -> tuple[Day, ...]:
    """Per local day of the scope (only the `last` days up to its latest attempt, if
    given): one range query per day on the covering index `attempts_daily`."""
    where, params = scope.where()
    # two queries: SQLite answers a lone MIN() or MAX() from the index, both at once by a scan
    lo = conn.execute(f"SELECT MIN(ts) FROM attempts WHERE {where}", params).fetchone()[0]
    hi = conn.execute(f"SELECT MAX(ts) FROM attempts WHERE {where}", params).fetchone()[0]
    if lo is None or hi is None:
        return ()
    first, final = date.fromtimestamp(lo), date.fromtimestamp(hi)
    if last is not None:
        first = max(first, final - timedelta(days=last - 1))
    sql = ("SELECT TOTAL(final), TOTAL(final AND routed_to = 'local' AND outcome != 'cache_hit'), "
           "TOTAL(final AND routed_to = 'local' AND lane = 'cloud' AND outcome != 'cache_hit'), "
           "TOTAL(final AND lane = 'local' AND outcome IN ('ok', 'cache_hit')), TOTAL(cost_usd), "
           f"TOTAL(baseline_cost_usd) FROM attempts WHERE ts >= ? AND ts < ? AND {where}")
    found: list[Day] = []
    day = first
    while day <= final:
        start, end = _midnight(day), _midnight(day + timedelta(days=1))
        jobs, routed, escalated, local, cost, base = conn.execute(sql, (start, end, *params)).fetchone()
        found.append(Day(day, int(jobs), int(routed), int(escalated), int(local), cost, base))
        day += timedelta(days=1)
    return tuple(found)


def breaker_view(conn: sqlite3.Connection, scope: Scope, *, cooldown_s: float, now: float) -> BreakerView:
    """Openings in scope, and the state now: open while the latest opening is within its
    cooldown and the run that opened it is still running (a breaker lives in its run)."""
    params: tuple[object, ...]
    if scope.kind == "session":
        where, params = "run_id IN (SELECT run_id FROM runs WHERE session = ?)", (scope.session,)
    elif scope.kind == "since":
        where, params = "ts >= ?", (scope.since,)
    else:
        where, params = "1", ()
    openings = int(conn.execute(f"SELECT COUNT(*) FROM breaker_events WHERE state = 'open' AND {where}",
                                params).fetchone()[0])
    recent = tuple(Opening(float(ts), str(reason), str(run_id)) for ts, reason, run_id in conn.execute(
        f"SELECT ts, reason, run_id FROM breaker_events WHERE state = 'open' AND {where} "
        "ORDER BY ts DESC LIMIT ?", (*params, RECENT_OPENINGS)))
    latest = conn.execute("SELECT b.ts, b.state, r.finished_at FROM breaker_events AS b "
                          "LEFT JOIN runs AS r USING (run_id) ORDER BY b.ts DESC LIMIT 1").fetchone()
    if latest is not None:
        ts, state, finished = latest
        until = float(ts) + cooldown_s
        if state == "open" and finished is None and until > now:
            return BreakerView("open", openings, recent, cooldown_s, open_until=until)
    return BreakerView("closed", openings, recent, cooldown_s)



# ----------------------------------------------------------------------------- helpers


def _midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day).timestamp()  # local midnight, DST-aware


# ----------------------------------------------------------------------------- facade + command


def router_status(settings: Settings, *, session: str | None = None, since: str | None = None,
                  all_: bool = False, by_day: bool = False, env: Mapping[str, str] | None = None,
                  now: float | None = None) -> RouterStatus:
    """Open the ledger (read side; a missing ledger is an empty status, not an error) and summarise."""
    from ollama_dist.ledger.store import Ledger

    path = settings.ledger_path
    cooldown = settings.breaker.cooldown_s
    if not path.exists():
        scope = resolve_scope(None, session=session, since=since, all_=all_, env=env, now=now)
        return empty_status(scope, cooldown_s=cooldown, ledger_found=False)
    ledger = Ledger(path, read_only=True)
    try:
        scope = ledger.read(lambda conn: resolve_scope(conn, session=session, since=since, all_=all_, env=env,
                                                       now=now))
        status = ledger.read(lambda conn: summarize(conn, scope, cooldown_s=cooldown, now=now, by_day=by_day))
        # the trust the router acts on: each task's whole history, whatever the scope
        return with_trust(status, ledger.history(status.tasks), settings.router.min_local_accuracy)
    finally:
        ledger.close()
