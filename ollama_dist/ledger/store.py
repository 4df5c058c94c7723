"""The ledger: every attempt of every job, in an embedded SQLite file (WAL mode).

Rows are written as they happen and committed at once, so a run killed mid-way keeps everything
already answered. Never the API key; prompts and answers only when `ledger.store_text` is on.

Readers (`route`, `router-status`) open the file read-only (`mode=ro`): no WAL switch,
no migrations, so a ledger on a read-only file or folder can still be read. Every
`sqlite3` error becomes a LedgerError naming the file and what to do.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from ollama_dist.errors import LedgerError
from ollama_dist.ledger import reasons
from ollama_dist.ledger.migrations import MIGRATIONS
from ollama_dist.ledger.plan_usage import PlanUsage
from ollama_dist.ledger.trust import (
    TaskHistory as TaskHistory,  # re-exported: it lived here
    task_history,
)


@dataclass(frozen=True)
class Attempt:
    run_id: str
    session: str
    job_id: str
    task: str
    task_fingerprint: str
    input_hash: str
    models_key: str
    routed_to: str
    lane: str
    backend: str
    model: str
    attempt: int
    outcome: str  # ok | invalid | error | skipped | cache_hit | handed_back
    reason: str | None = None
    fallback: str | None = None
    final: bool = False
    host: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    git_head: str | None = None
    output_path: str | None = None
    output_hash: str | None = None
    prompt_text: str | None = None
    answer_text: str | None = None
    ts: float = 0.0
    reported_cost_usd: float | None = None  # what the backend said it cost (Claude Code's estimate)
    tokens_estimated: bool = False  # a handed-back job: its tokens are an estimate
    wait_s: float | None = None  # queued for the lane's slot before the call; latency_s is the service time
    unanswered_baseline_usd: float = 0.0  # a job that ended unanswered: its all-Claude estimate (final row)
    thinking_tokens: int = 0  # of output_tokens, the reasoning trace (an estimate where not reported)


ATTEMPT_COLUMNS = tuple(f.name for f in fields(Attempt))
T = TypeVar("T")


def read_only_uri(path: Path, *, immutable: bool = False) -> str:
    """The SQLite URI that opens `path` read-only (never creates it, never writes it)."""
    return f"file:{quote(str(path.absolute()))}?mode=ro" + ("&immutable=1" if immutable else "")


def open_reader(path: Path, *, timeout_s: float = 30.0) -> sqlite3.Connection:
    """A read-only connection to the ledger file at `path`.

    A WAL ledger in a folder that cannot be written, without its `-shm` file, cannot be
    opened `mode=ro` (SQLite would have to create that file): it is then read as
    immutable, which is safe since nothing can be writing there."""
    for immutable in (False, True):
        db = sqlite3.connect(read_only_uri(path, immutable=immutable), uri=True, timeout=timeout_s,
                             isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            if immutable or getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_CANTOPEN or not path.is_file():
                raise
    raise AssertionError("unreachable")


def ledger_error(path: Path, doing: str, exc: Exception) -> LedgerError:
    """A sqlite3 (or OS) error on the ledger file, as one message that says what to do."""
    text = str(exc) if isinstance(exc, sqlite3.Error) else (getattr(exc, "strerror", None) or str(exc))
    damaged = isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
    if damaged or any(
            word in text for word in ("malformed", "not a database", "no such table", "no such column",
                                      "no such index")):
        hint = (f"the file is damaged or not an ollama-dist ledger: move it aside (mv {path} {path}.damaged) "
                "and run again to start an empty one")
    elif "readonly" in text or "read-only" in text or "permission" in text.lower() or "unable to open" in text:
        hint = "check the permissions of the file and its folder (or set ledger.path elsewhere)"
    elif "locked" in text:
        hint = "another ollama-dist process holds it: wait for it to finish"
    else:
        hint = "check the path and that the disk is not full"
    return LedgerError(f"cannot {doing} the ledger {path}: {text}", hint=hint)


@dataclass(frozen=True)
class CachedAnswer:
    job_id: str
    model: str
    backend: str
    output_path: str | None
    output_hash: str | None
    baseline_cost_usd: float
    input_tokens: int
    output_tokens: int


def _utf8(value: object) -> object:
    return value.encode("utf-8", errors="replace").decode("utf-8") if isinstance(value, str) else value


class Ledger:
    """The ledger file. `read_only=True` for readers: opened with `mode=ro`, never migrated;
    a ledger older than this version's schema is then upgraded once if it can be written."""

    def __init__(self, path: Path, *, timeout_s: float = 30.0, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if read_only and self._open_reader(timeout_s):
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            self._open(time.monotonic() + timeout_s)
        except (sqlite3.Error, OSError) as exc:
            if read_only and self._read_as_it_is(timeout_s, exc):
                return
            raise ledger_error(path, "open", exc) from exc

    # ------------------------------------------------------------------ schema

    def _open_reader(self, timeout_s: float) -> bool:
        """Open read-only; False (and nothing open) when migrations are pending."""
        try:
            self._db = open_reader(self.path, timeout_s=timeout_s)
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            done = {row[0] for row in self._db.execute("SELECT name FROM schema_migrations")} if (
                "schema_migrations" in tables) else set()
        except sqlite3.Error as exc:
            raise ledger_error(self.path, "open", exc) from exc
        if all(name in done for name, _ in MIGRATIONS):
            return True
        self._db.close()
        self.read_only = False
        return False

    def _read_as_it_is(self, timeout_s: float, exc: Exception) -> bool:
        """A reader of an older ledger that it may not upgrade (a read-only file or folder) reads it
        as it is: the columns added since are missing, and readers fall back where they use them."""
        text = str(exc).lower()
        if not any(word in text for word in ("readonly", "read-only", "permission", "unable to open")):
            return False
        writer = getattr(self, "_db", None)
        if writer is not None:
            writer.close()
        if not self.path.is_file():
            return False
        try:
            self._db = open_reader(self.path, timeout_s=timeout_s)
        except sqlite3.Error:
            return False
        self.read_only = True
        return True

    def _open(self, deadline: float) -> None:
        """WAL mode and the migrations. Switching a new file to WAL takes an exclusive lock that
        SQLite's busy handler does not wait for, so two runs creating one ledger at once retry."""
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        db = self._db
        db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        done = {row[0] for row in db.execute("SELECT name FROM schema_migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (name,)).fetchone():
                    db.execute("ROLLBACK")  # another process applied it meanwhile
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time()))
                db.execute("COMMIT")
            except sqlite3.Error:
                db.execute("ROLLBACK")
                raise

    def columns(self, table: str) -> list[str]:
        return self._read(lambda: [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")])

    # ------------------------------------------------------------------ writing

    def _write(self, sql: str, params: Iterable[object]) -> sqlite3.Cursor:
        values = tuple(params)
        try:
            try:
                return self._db.execute(sql, values)
            except UnicodeEncodeError:  # a lone surrogate (an answer may escape one): kept as '?'
                return self._db.execute(sql, tuple(_utf8(v) for v in values))
        except sqlite3.Error as exc:
            raise ledger_error(self.path, "write", exc) from exc

    def start_run(self, run_id: str, session: str, root: str, git_head: str | None,
                  jobs: int, batch_id: str | None = None) -> None:
        self._write("INSERT INTO runs (run_id, session, batch_id, started_at, root, git_head, jobs) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", (run_id, session, batch_id, time.time(), root, git_head, jobs))

    def finish_run(self, run_id: str, exit_code: int, error: str | None = None) -> None:
        """The run's end: its exit code, and `error` when it was interrupted or died."""
        self._write("UPDATE runs SET finished_at = ?, exit_code = ?, error = ? WHERE run_id = ?",
                    (time.time(), exit_code, error, run_id))

    def record(self, attempt: Attempt) -> int:
        """Insert one attempt (committed at once); returns its row id."""
        row = asdict(attempt)
        row["ts"] = row["ts"] or time.time()
        row["final"] = int(row["final"])
        marks = ", ".join("?" for _ in ATTEMPT_COLUMNS)
        cur = self._write(f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({marks})",
                          (row[c] for c in ATTEMPT_COLUMNS))
        return int(cur.lastrowid or 0)

    def mark_final(self, row_id: int, unanswered_baseline_usd: float = 0.0) -> None:
        """The job ended on this row; `unanswered_baseline_usd` is its all-Claude estimate when it ended
        unanswered with no cloud tokens to price (see `ollama_dist.ledger.tally`)."""
        self._write("UPDATE attempts SET final = 1, unanswered_baseline_usd = ? WHERE id = ?",
                    (unanswered_baseline_usd, row_id))

    def record_plan_usage(self, usage: PlanUsage) -> bool:
        """A reading of the plan's usage (ledger.plan_usage); False when it repeats the last one."""
        from ollama_dist.ledger import plan_usage

        try:
            return plan_usage.insert(self._db, usage)
        except sqlite3.Error as exc:
            raise ledger_error(self.path, "write", exc) from exc

    def breaker_event(self, run_id: str, ts: float, state: str, reason: str) -> None:
        self._write("INSERT INTO breaker_events (run_id, ts, state, reason) VALUES (?, ?, ?, ?)",
                    (run_id, ts, state, reason))

    # ------------------------------------------------------------------ reading

    def _read(self, query: Callable[[], T]) -> T:
        try:
            return query()
        except sqlite3.Error as exc:
            raise ledger_error(self.path, "read", exc) from exc

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run `query` on the connection; a sqlite3 error becomes a LedgerError naming the file."""
        return self._read(lambda: query(self._db))

    def cached(self, task_fingerprint: str, input_hash: str, models_key: str) -> CachedAnswer | None:
        """The newest valid answer for the same task definition, input and models, unless discarded."""
        key = (task_fingerprint, input_hash, models_key)
        row = self._read(lambda: self._db.execute(
            "SELECT job_id, model, backend, output_path, output_hash, baseline_cost_usd, input_tokens, "
            "output_tokens FROM attempts WHERE task_fingerprint = ? AND input_hash = ? AND models_key = ? "
            "AND outcome = 'ok' AND final = 1 AND id > (SELECT COALESCE(MAX(before_id), 0) FROM "
            "discarded_answers WHERE task_fingerprint = ? AND input_hash = ? AND models_key = ?) "
            "ORDER BY id DESC LIMIT 1", key + key,
        ).fetchone())
        return CachedAnswer(*row) if row else None

    def discard(self, run_id: str, keys: Iterable[tuple[str, str, str]]) -> int:
        """Stop serving the answers recorded so far for each (task fingerprint, input hash, models key):
        they are asked again (`run --refresh`); their rows stay. How many answers would have been served."""
        unique = sorted(set(keys))
        served = sum(self.cached(*key) is not None for key in unique)
        self._write("BEGIN IMMEDIATE", ())
        try:
            top = int(self._write("SELECT COALESCE(MAX(id), 0) FROM attempts", ()).fetchone()[0])
            for key in unique:
                self._write("INSERT INTO discarded_answers (run_id, ts, task_fingerprint, input_hash, models_key, "
                            "before_id) VALUES (?, ?, ?, ?, ?, ?)", (run_id, time.time(), *key, top))
            self._write("COMMIT", ())
        except BaseException:
            self._db.rollback()
            raise
        return served

    def attach_answer(self, row_id: int, output_path: str, output_hash: str) -> None:
        """The caller's answer to a handed-back job: where it was written, and its hash."""
        self._write("UPDATE attempts SET output_path = ?, output_hash = ? WHERE id = ? AND outcome = 'handed_back'",
                    (output_path, output_hash, row_id))

    def written(self, output_path: str) -> str | None:
        """The hash of the newest answer recorded as written to `output_path`, if any."""
        row = self._db.execute(
            "SELECT output_hash FROM attempts WHERE output_path = ? AND outcome IN ('ok', 'cache_hit') "
            "AND final = 1 ORDER BY id DESC LIMIT 1", (output_path,)).fetchone()
        return str(row[0]) if row and row[0] else None

    def history(self, tasks: Iterable[str]) -> dict[str, TaskHistory]:
        """Per task, the trust its local answers earned (`ledger.trust`)."""
        names = list(tasks)
        return self._read(lambda: task_history(self._db, names)) if names else {}

    def vector(self, key: str, model_id: str) -> bytes | None:
        """A stored instruction embedding (the router's second opinion), or None."""
        row = self._db.execute("SELECT vector FROM instruction_embeddings WHERE fingerprint = ? AND model_id = ?",
                               (key, model_id)).fetchone()
        return bytes(row[0]) if row else None

    def save_vector(self, key: str, model_id: str, data: bytes) -> None:
        """Keep an embedding for later runs; a reader (`route`) keeps it in memory only."""
        if self.read_only:
            return
        self._write("INSERT OR IGNORE INTO instruction_embeddings (fingerprint, model_id, vector, created_at) "
                    "VALUES (?, ?, ?, ?)", (key, model_id, data, time.time()))

    def link_instruction(self, task_fingerprint: str, task: str, key: str) -> None:
        """Which instruction a task definition has: what lets outcomes teach the second opinion."""
        if self.read_only:
            return
        self._write("INSERT OR IGNORE INTO task_instructions (task_fingerprint, task, instruction, created_at) "
                    "VALUES (?, ?, ?, ?)", (task_fingerprint, task, key, time.time()))

    def instruction_outcomes(self, model_id: str) -> list[tuple[str, str, int, int, bytes]]:
        """Per embedded instruction: (key, a task name, local jobs passed, local jobs failed, vector).

        Passed: a final valid local answer, and no shadow cloud answer for the job that failed
        validation or differed from it. Failed: a local answer ended invalid and no local answer was kept."""
        rows = self._db.execute(
            "WITH jobs AS (SELECT ti.instruction AS instruction, ti.task AS task, "
            "MAX(a.lane = 'local' AND a.outcome = 'ok' AND a.final = 1) AS passed, "
            "MAX(a.lane = 'local' AND a.outcome = 'invalid') AS invalid, "
            "MAX(a.lane = 'cloud' AND (a.outcome = 'invalid' AND a.reason LIKE 'shadow:%' "
            f"OR a.reason = '{reasons.SHADOW_DIFFERS}')) AS shadow_failed "
            "FROM task_instructions ti JOIN attempts a ON a.task_fingerprint = ti.task_fingerprint "
            "GROUP BY ti.instruction, a.run_id, a.job_id) "
            "SELECT j.instruction, MIN(j.task), SUM(j.passed AND NOT j.shadow_failed), "
            "SUM(j.invalid AND NOT j.passed), e.vector FROM jobs j JOIN instruction_embeddings e "
            "ON e.fingerprint = j.instruction AND e.model_id = ? GROUP BY j.instruction ORDER BY j.instruction",
            (model_id,)).fetchall()
        return [(key, task, int(ok), int(bad), bytes(vec)) for key, task, ok, bad, vec in rows]

    def attempts(self, run_id: str) -> list[dict[str, object]]:
        def query() -> list[dict[str, object]]:
            cur = self._db.execute("SELECT * FROM attempts WHERE run_id = ? ORDER BY id", (run_id,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

        return self._read(query)

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    def close(self) -> None:
        self._db.close()
