"""The ledger: every attempt of every job, in an embedded SQLite file (WAL mode).

Rows are written as they happen and committed at once, so a run killed mid-way
keeps everything already answered. Never the API key; prompts and answers only
when `ledger.store_text` is on.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ollama_dist.errors import LedgerError
from ollama_dist.migrations import MIGRATIONS
from ollama_dist.router import TaskHistory


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
    outcome: str  # ok | invalid | error | skipped | cache_hit
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


ATTEMPT_COLUMNS = tuple(f.name for f in fields(Attempt))


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


class Ledger:
    def __init__(self, path: Path, *, timeout_s: float = 30.0) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            self._open(time.monotonic() + timeout_s)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {path}: {exc}",
                              hint="check the path and that the disk is not full") from exc

    # ------------------------------------------------------------------ schema

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
        return [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")]

    # ------------------------------------------------------------------ writing

    def _write(self, sql: str, params: Iterable[object]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write the ledger {self.path}: {exc}") from exc

    def start_run(self, run_id: str, session: str, root: str, git_head: str | None,
                  jobs: int, batch_id: str | None = None) -> None:
        self._write("INSERT INTO runs (run_id, session, batch_id, started_at, root, git_head, jobs) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", (run_id, session, batch_id, time.time(), root, git_head, jobs))

    def finish_run(self, run_id: str, exit_code: int) -> None:
        self._write("UPDATE runs SET finished_at = ?, exit_code = ? WHERE run_id = ?",
                    (time.time(), exit_code, run_id))

    def record(self, attempt: Attempt) -> int:
        """Insert one attempt (committed at once); returns its row id."""
        row = asdict(attempt)
        row["ts"] = row["ts"] or time.time()
        row["final"] = int(row["final"])
        marks = ", ".join("?" for _ in ATTEMPT_COLUMNS)
        cur = self._write(f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({marks})",
                          (row[c] for c in ATTEMPT_COLUMNS))
        return int(cur.lastrowid or 0)

    def mark_final(self, row_id: int) -> None:
        self._write("UPDATE attempts SET final = 1 WHERE id = ?", (row_id,))

    def breaker_event(self, run_id: str, ts: float, state: str, reason: str) -> None:
        self._write("INSERT INTO breaker_events (run_id, ts, state, reason) VALUES (?, ?, ?, ?)",
                    (run_id, ts, state, reason))

    # ------------------------------------------------------------------ reading

    def cached(self, task_fingerprint: str, input_hash: str, models_key: str) -> CachedAnswer | None:
        """The newest valid answer for the same task definition, input and models."""
        row = self._db.execute(
            "SELECT job_id, model, backend, output_path, output_hash, baseline_cost_usd, input_tokens, "
            "output_tokens FROM attempts WHERE task_fingerprint = ? AND input_hash = ? AND models_key = ? "
            "AND outcome = 'ok' AND final = 1 ORDER BY id DESC LIMIT 1",
            (task_fingerprint, input_hash, models_key),
        ).fetchone()
        return CachedAnswer(*row) if row else None

    def history(self, tasks: Iterable[str]) -> dict[str, TaskHistory]:
        """Per task: how many jobs went to the local lane, and how many of those ended invalid there."""
        names = list(tasks)
        if not names:
            return {}
        marks = ", ".join("?" for _ in names)
        rows = self._db.execute(
            f"SELECT task, COUNT(DISTINCT run_id || '/' || job_id), "
            f"COUNT(DISTINCT CASE WHEN outcome = 'invalid' AND attempt >= 2 THEN run_id || '/' || job_id END) "
            f"FROM attempts WHERE lane = 'local' AND outcome != 'skipped' AND task IN ({marks}) GROUP BY task",
            names,
        ).fetchall()
        return {task: TaskHistory(local_jobs=jobs, local_failures=failed) for task, jobs, failed in rows}

    def vector(self, key: str, model_id: str) -> bytes | None:
        """A stored instruction embedding (the router's second opinion), or None."""
        row = self._db.execute("SELECT vector FROM instruction_embeddings WHERE fingerprint = ? AND model_id = ?",
                               (key, model_id)).fetchone()
        return bytes(row[0]) if row else None

    def save_vector(self, key: str, model_id: str, data: bytes) -> None:
        self._write("INSERT OR IGNORE INTO instruction_embeddings (fingerprint, model_id, vector, created_at) "
                    "VALUES (?, ?, ?, ?)", (key, model_id, data, time.time()))

    def link_instruction(self, task_fingerprint: str, task: str, key: str) -> None:
        """Which instruction a task definition has: what lets outcomes teach the second opinion."""
        self._write("INSERT OR IGNORE INTO task_instructions (task_fingerprint, task, instruction, created_at) "
                    "VALUES (?, ?, ?, ?)", (task_fingerprint, task, key, time.time()))

    def instruction_outcomes(self, model_id: str) -> list[tuple[str, str, int, int, bytes]]:
        """Per embedded instruction: (key, a task name, local jobs passed, local jobs failed, vector).

        Passed: a final valid local answer, and no shadow cloud answer for the job that failed
        validation. Failed: a local answer ended invalid and no local answer was kept."""
        rows = self._db.execute(
            "WITH jobs AS (SELECT ti.instruction AS instruction, ti.task AS task, "
            "MAX(a.lane = 'local' AND a.outcome = 'ok' AND a.final = 1) AS passed, "
            "MAX(a.lane = 'local' AND a.outcome = 'invalid') AS invalid, "
            "MAX(a.lane = 'cloud' AND a.outcome = 'invalid' AND a.reason LIKE 'shadow:%') AS shadow_failed "
            "FROM task_instructions ti JOIN attempts a ON a.task_fingerprint = ti.task_fingerprint "
            "GROUP BY ti.instruction, a.run_id, a.job_id) "
            "SELECT j.instruction, MIN(j.task), SUM(j.passed AND NOT j.shadow_failed), "
            "SUM(j.invalid AND NOT j.passed), e.vector FROM jobs j JOIN instruction_embeddings e "
            "ON e.fingerprint = j.instruction AND e.model_id = ? GROUP BY j.instruction ORDER BY j.instruction",
            (model_id,)).fetchall()
        return [(key, task, int(ok), int(bad), bytes(vec)) for key, task, ok, bad, vec in rows]

    def attempts(self, run_id: str) -> list[dict[str, object]]:
        cur = self._db.execute("SELECT * FROM attempts WHERE run_id = ? ORDER BY id", (run_id,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    def close(self) -> None:
        self._db.close()
