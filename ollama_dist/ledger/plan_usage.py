"""The plan's usage as Claude Code reports it: the five-hour and weekly windows' used share.

Claude Code's status line is the only documented source of a subscription's usage
(`rate_limits.five_hour` / `seven_day`: `used_percentage`, `resets_at` in epoch
seconds; present for Pro/Max log-ins after the first answer, each window may be
missing). `ollama-dist statusline` records what it is handed in the `plan_usage` table
(migration 0008); budget-aware routing (`ollama_dist.routing.budget`) and
`router-status` read it back as `PlanUsage` values.

Within a window the used share only grows until it resets, so an old reading is a
lower bound on the usage now until its `resets_at`; past that it says nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

COLUMNS = "ts, session, five_hour_pct, five_hour_resets_at, seven_day_pct, seven_day_resets_at"
SAME_READING_S = 300.0  # an unchanged reading is written again at most this often


@dataclass(frozen=True)
class Window:
    """One rate-limit window: the share used (0-100) and when it resets (epoch seconds)."""

    used_pct: float
    resets_at: float | None = None

    def as_json(self) -> dict[str, float | None]:
        return {"used_percentage": round(self.used_pct, 1), "resets_at": self.resets_at}


@dataclass(frozen=True)
class PlanUsage:
    """One reading of the plan's usage, as recorded at `ts` in `session`."""

    ts: float
    session: str | None
    five_hour: Window | None = None
    seven_day: Window | None = None

    def five_hour_now(self, now: float, max_age_s: float) -> float | None:
        """The five-hour usage this reading vouches for at `now`: its share until the window
        resets (a lower bound, since the share only grows); without `resets_at`, for
        `max_age_s` after it was recorded; else None."""
        window = self.five_hour
        if window is None:
            return None
        if window.resets_at is not None:
            return window.used_pct if now < window.resets_at else None
        return window.used_pct if now - self.ts <= max_age_s else None

    def values(self) -> tuple[float | None, float | None, float | None, float | None]:
        five, seven = self.five_hour, self.seven_day
        return (five.used_pct if five else None, five.resets_at if five else None,
                seven.used_pct if seven else None, seven.resets_at if seven else None)

    def as_json(self) -> dict[str, object]:
        return {"recorded_at": self.ts, "session": self.session,
                "five_hour": self.five_hour.as_json() if self.five_hour else None,
                "seven_day": self.seven_day.as_json() if self.seven_day else None}


def _window(pct: object, resets_at: object) -> Window | None:
    if not isinstance(pct, int | float):
        return None
    return Window(float(pct), float(resets_at) if isinstance(resets_at, int | float) else None)


def _usage(row: tuple[object, ...]) -> PlanUsage:
    ts, session, five, five_at, seven, seven_at = row
    assert isinstance(ts, int | float)
    return PlanUsage(float(ts), str(session) if session is not None else None,
                     _window(five, five_at), _window(seven, seven_at))


def insert(conn: sqlite3.Connection, usage: PlanUsage, *, same_reading_s: float = SAME_READING_S) -> bool:
    """Record `usage` unless the session's latest reading is the same and recent; True when written.
    (The status line runs after every message: most readings repeat the last one.)"""
    last = conn.execute(f"SELECT {COLUMNS} FROM plan_usage WHERE session IS ? ORDER BY ts DESC, id DESC LIMIT 1",
                        (usage.session,)).fetchone()
    if last is not None:
        before = _usage(last)
        if before.values() == usage.values() and usage.ts - before.ts < same_reading_s:
            return False
    conn.execute(f"INSERT INTO plan_usage ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                 (usage.ts, usage.session, *usage.values()))
    return True


def latest(conn: sqlite3.Connection) -> PlanUsage | None:
    """The newest reading of any session: the plan is the account's, not one session's."""
    row = conn.execute(f"SELECT {COLUMNS} FROM plan_usage ORDER BY ts DESC, id DESC LIMIT 1").fetchone()
    return _usage(row) if row else None


def span(conn: sqlite3.Connection, *, session: str | None = None,
         since: float | None = None) -> tuple[PlanUsage, PlanUsage] | None:
    """The first and the last reading of a session (or since a time, or of the whole ledger)."""
    where, params = "1", tuple[object, ...]()
    if session is not None:
        where, params = "session = ?", (session,)
    elif since is not None:
        where, params = "ts >= ?", (since,)
    rows = [conn.execute(f"SELECT {COLUMNS} FROM plan_usage WHERE {where} ORDER BY ts {order}, id {order} LIMIT 1",
                         params).fetchone() for order in ("ASC", "DESC")]
    if rows[0] is None or rows[1] is None:
        return None
    return _usage(rows[0]), _usage(rows[1])
