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

Definitions: jobs, lanes, escalations, cost, baseline and savings are those of
`ollama_dist.ledger.tally` (the run summary folds its rows through the same `Tally.add`).
Besides:
- tokens_saved: input + output tokens of the jobs answered locally, which would
  otherwise have been sent to Claude (counted by the local tokenizer).
- latency percentiles: the service time of answered or failed calls; wait percentiles:
  the time calls queued for a slot of their lane (rows from before migration 0009 have none).
- rework: jobs answered again (not from the cache) when a different run had answered
  the same task and input less than `rework_window_s` before: a follow-up signal.

A ledger older than this version's schema that cannot be upgraded (a read-only file) is read
as it is: the figures its rows cannot hold (waits, unanswered estimates) are zero or absent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ollama_dist.ledger.reasons import invalid_kind_sql
from ollama_dist.ledger.tally import NO_LOCAL_BACKEND, CostlyJob, Tally
from ollama_dist.report.figures import (
    REWORK_WINDOW_S,
    BreakerView,
    Day,
    Opening,
    PlanView,
    RouterStatus,
    empty_status,
    warnings,
    with_trust,
)
from ollama_dist.report.scope import (
    Scope,
    parse_since as parse_since,  # re-exported: tests, bench
    resolve_scope,
)

if TYPE_CHECKING:
    import sqlite3
    from concurrent.futures import Future, ThreadPoolExecutor

    from ollama_dist.config import Settings

LANES = ("local", "cloud")
TIMED = "outcome IN ('ok', 'invalid', 'error')"  # must read as migration 0003's partial index
WAITED = "wait_s IS NOT NULL"  # must read as migration 0009's partial index
TREND_DAYS = 7
RECENT_OPENINGS = 5
COSTLY_LISTED = 100


# ----------------------------------------------------------------------------- figures


def summarize(conn: sqlite3.Connection, scope: Scope, *, cooldown_s: float, now: float | None = None,
              by_day: bool = False, rework_window_s: float = REWORK_WINDOW_S) -> RouterStatus:
    """Every router-status figure for `scope`, from a ledger connection."""
    now = time.time() if now is None else now
    if scope.kind == "session" and scope.session is None:
        return replace(empty_status(scope, cooldown_s=cooldown_s, ledger_found=True),
                       breaker=breaker_view(conn, scope, cooldown_s=cooldown_s, now=now), plan=plan_view(conn, scope))
    with _Background(conn, scope, rework_window_s) as pending_rework:
        totals, tasks = task_counts(conn, scope)
        all_days = days(conn, scope, last=None if by_day else TREND_DAYS)
        wait_p50, wait_p95 = waits(conn, scope, (0.50, 0.95))
        status = RouterStatus(
            scope=scope,
            totals=totals,
            tasks=tasks,
            escalation_reasons=escalation_reasons(conn, scope) if totals.escalated else {},
            p50_latency_s=percentiles(conn, scope, totals.timed, 0.50),
            p95_latency_s=percentiles(conn, scope, totals.timed, 0.95),
            p50_wait_s=wait_p50,
            p95_wait_s=wait_p95,
            costly=costly_jobs(conn, scope) if totals.saved_usd < 0 else (),
            rework=pending_rework.result(),
            rework_window_s=rework_window_s,
            breaker=breaker_view(conn, scope, cooldown_s=cooldown_s, now=now),
            days=all_days if by_day else (),
            plan=plan_view(conn, scope),
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


def task_counts(conn: sqlite3.Connection, scope: Scope) -> tuple[Tally, dict[str, Tally]]:
    """One pass over the covering index `attempts_status`: a few hundred groups, folded here."""
    where, params = scope.where()
    unanswered = column(conn, "unanswered_baseline_usd", "0")
    rows = conn.execute(
        "SELECT task, routed_to, lane, outcome, final, COUNT(*), TOTAL(cost_usd), TOTAL(baseline_cost_usd), "
        f"TOTAL({unanswered}), TOTAL(input_tokens + output_tokens) FROM attempts WHERE {where} "
        "GROUP BY task, routed_to, lane, outcome, final", params).fetchall()
    totals, tasks = Tally(), dict[str, Tally]()
    for task, *group in rows:
        totals.add(*group)
        tasks.setdefault(task, Tally()).add(*group)
    return totals, tasks


def column(conn: sqlite3.Connection, name: str, fallback: str) -> str:
    """`name` where the attempts table has that column, else `fallback` (an older ledger read as it is)."""
    present = any(row[1] == name for row in conn.execute("PRAGMA table_info(attempts)"))
    return name if present else fallback


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


def waits(conn: sqlite3.Connection, scope: Scope, qs: tuple[float, ...]) -> list[dict[str, float]]:
    """Nearest-rank percentiles `qs` of the time calls queued for a slot, per lane, walking the
    partial index `attempts_wait` from whichever end is nearer (rows from before migration 0009
    have no wait and are left out)."""
    found: list[dict[str, float]] = [{} for _ in qs]
    if column(conn, "wait_s", "") == "":
        return found
    where, params = scope.where()
    counts = dict(conn.execute(f"SELECT lane, COUNT(*) FROM attempts{scope.index_hint()} WHERE {WAITED} "
                               f"AND {where} GROUP BY lane", params).fetchall())
    for lane in LANES:
        n = int(counts.get(lane, 0))
        for q, into in zip(qs, found):
            if not n:
                continue
            rank = max(1, math.ceil(q * n))
            order, offset = ("DESC", n - rank) if n - rank < rank - 1 else ("ASC", rank - 1)
            row = conn.execute(f"SELECT wait_s FROM attempts{scope.index_hint()} WHERE lane = ? AND {WAITED} "
                               f"AND {where} ORDER BY wait_s {order} LIMIT 1 OFFSET ?",
                               (lane, *params, offset)).fetchone()
            if row is not None:
                into[lane] = float(row[0])
    return found


def costly_jobs(conn: sqlite3.Connection, scope: Scope) -> tuple[CostlyJob, ...]:
    """The jobs whose attempts cost more than the same work on Claude, the costliest first
    (read only when the savings are negative: what made them so)."""
    where, params = scope.where()
    rows = conn.execute(
        "SELECT run_id, job_id, TOTAL(baseline_cost_usd) - TOTAL(cost_usd) AS saved, "
        "MAX(reason LIKE 'shadow%' AND cost_usd > 0) FROM attempts "
        f"WHERE {where} GROUP BY run_id, job_id HAVING saved < -1e-12 ORDER BY saved LIMIT ?",
        (*params, COSTLY_LISTED)).fetchall()
    return tuple(CostlyJob(str(run), str(job), float(saved), bool(shadow)) for run, job, saved, shadow in rows)


def escalation_reasons(conn: sqlite3.Connection, scope: Scope) -> dict[str, int]:
    """Why each escalated job left the local lane: the outcome of its last local attempt (invalid
    as `ungrounded`, `disagree`, `cut_off` or `invalid`; or the error / skip reason: unreachable,
    timeout, busy, breaker_open...), as `ollama_dist.ledger.tally.escalation_reason` reads it
    from a run's rows."""
    where, params = scope.where("e")
    # ORDER BY keeps the subquery from being flattened (and the lookup from running twice).
    rows = conn.execute(
        f"SELECT COALESCE(why, '{NO_LOCAL_BACKEND}'), COUNT(*) FROM (SELECT ("
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
    unanswered = column(conn, "unanswered_baseline_usd", "0")
    sql = ("SELECT TOTAL(final), TOTAL(final AND routed_to = 'local' AND outcome != 'cache_hit'), "
           "TOTAL(final AND routed_to = 'local' AND lane = 'cloud' AND outcome != 'cache_hit'), "
           "TOTAL(final AND lane = 'local' AND outcome IN ('ok', 'cache_hit')), TOTAL(cost_usd), "
           f"TOTAL(baseline_cost_usd + {unanswered}) FROM attempts WHERE ts >= ? AND ts < ? AND {where}")
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



def plan_view(conn: sqlite3.Connection, scope: Scope) -> PlanView:
    """The plan usage readings in scope and the latest of all (none in a ledger older than 0008)."""
    from ollama_dist.ledger import plan_usage

    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'plan_usage'").fetchone() is None:
        return PlanView()
    if scope.kind == "session" and scope.session is None:
        return PlanView(latest=plan_usage.latest(conn))
    span = plan_usage.span(conn, session=scope.session if scope.kind == "session" else None,
                           since=scope.since if scope.kind == "since" else None)
    first, last = span if span else (None, None)
    return PlanView(first, last, plan_usage.latest(conn))


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
