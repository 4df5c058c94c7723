"""router-status speed: the figures of a 1,000,000-attempt ledger, timed.

Builds a ledger in a temp dir (the real schema and migrations, rows bulk-inserted with
executemany in one transaction, the indexes rebuilt afterwards exactly as the
migrations define them), then times `status.summarize` (the figures behind
`router-status`, without the CLI) for --all, --since 7d, one session, and --all --by day.

The traffic is shaped like real use: 90 days, runs of 50-400 jobs, 30 tasks (one of
them fails locally most of the time), most inputs new, a quarter re-runs of recent
inputs (mostly served from the cache, some answered again), escalations for invalid
answers, timeouts, an unreachable server and the breaker.

Run: python bench/status_bench.py [--rows N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollama_dist.ledger.store import ATTEMPT_COLUMNS, Ledger  # noqa: E402
from ollama_dist.report.status import Scope, summarize  # noqa: E402

DAYS = 90
TASKS = [f"task-{i:02d}" for i in range(30)]
BAD_LOCAL_TASK = "task-07"
CLOUD_TASKS = set(TASKS[20:])
LOCAL_PRICE = 0.0
IN_PRICE, OUT_PRICE = 3e-6, 15e-6  # the baseline (Sonnet-like) per token
HAIKU = 1 / 3  # escalation model cost relative to the baseline


def attempts(rows: int, runs: list[tuple[str, str, float]], seed: int = 0) -> Iterator[tuple[object, ...]]:
    """`rows` ledger rows as tuples in ATTEMPT_COLUMNS order; each run started is appended to `runs`."""
    rnd = random.Random(seed)
    now = time.time()
    start = now - DAYS * 86400
    step = DAYS * 86400 / (rows / 1.15)
    recent: dict[str, deque[str]] = {t: deque(maxlen=50) for t in TASKS}
    made = 0
    run = 0
    ts = start
    index = {c: i for i, c in enumerate(ATTEMPT_COLUMNS)}
    blank: list[object] = [None] * len(ATTEMPT_COLUMNS)
    for name, value in (("final", 0), ("input_tokens", 0), ("output_tokens", 0), ("cache_creation_tokens", 0),
                        ("cache_read_tokens", 0), ("latency_s", 0.0), ("cost_usd", 0.0),
                        ("baseline_cost_usd", 0.0), ("tokens_estimated", 0), ("unanswered_baseline_usd", 0.0)):
        blank[index[name]] = value
    while made < rows:
        run += 1
        run_id, session = f"run-{run:06d}", f"session-{run // 3:06d}"
        runs.append((run_id, session, ts))
        for j in range(rnd.randint(50, 400)):
            ts += step
            task = rnd.choice(TASKS)
            rerun = rnd.random() < 0.25 and recent[task]
            input_hash = rnd.choice(recent[task]) if rerun else f"{rnd.getrandbits(128):032x}"
            recent[task].append(input_hash)
            tokens_in, tokens_out = rnd.randint(100, 3000), rnd.randint(10, 500)
            baseline = tokens_in * IN_PRICE + tokens_out * OUT_PRICE
            base = dict(run_id=run_id, session=session, job_id=f"{task}:{j}", task=task, task_fingerprint=task,
                        input_hash=input_hash, models_key="m", ts=ts)
            routed = "cloud" if task in CLOUD_TASKS else "local"

            def row(lane: str, outcome: str, number: int, *, final: bool = False, reason: str | None = None,
                    cost: float = 0.0, base_cost: float = 0.0, used: bool = True) -> tuple[object, ...]:
                values = dict(base, routed_to=routed, lane=lane, attempt=number, outcome=outcome, reason=reason,
                              final=int(final), backend="ollama" if lane == "local" else "claude",
                              model="gemma3:270m" if lane == "local" else "claude-haiku-5-5",
                              input_tokens=tokens_in if used else 0, output_tokens=tokens_out if used else 0,
                              latency_s=0.0 if not used else rnd.lognormvariate(0.5 if lane == "local" else 1.2, 0.5),
                              wait_s=None if outcome == "cache_hit" else rnd.expovariate(2.0 if lane == "local"
                                                                                           else 50.0),
                              cost_usd=cost, baseline_cost_usd=base_cost)
                out = list(blank)
                for key, value in values.items():
                    out[index[key]] = value
                return tuple(out)

            if rerun and rnd.random() < 0.8:
                job = [row(routed, "cache_hit", 1, final=True, reason="same input", base_cost=baseline, used=False)]
            elif routed == "cloud":
                job = [row("cloud", "ok", 1, final=True, cost=baseline, base_cost=baseline)]
                if rnd.random() < 0.03:
                    job.insert(0, row("cloud", "error", 1, reason="overloaded", used=False))
                    job[1] = row("cloud", "ok", 2, final=True, cost=baseline, base_cost=baseline)
            else:
                job = local_job(rnd, row, baseline, bad=task == BAD_LOCAL_TASK)
            yield from job
            made += len(job)
            if made >= rows:
                return


def local_job(rnd: random.Random, mk: Callable[..., tuple[object, ...]], baseline: float, *,
              bad: bool) -> list[tuple[object, ...]]:
    """The attempts of one local-routed job: answered, retried, escalated or skipped."""
    r = rnd.random()
    cloud_ok = {"final": True, "cost": baseline * HAIKU, "base_cost": baseline}
    if bad:
        r = 0.8 + r * 0.1  # mostly invalid answers
    if r < 0.72:
        return [mk("local", "ok", 1, final=True, base_cost=baseline)]
    if r < 0.80:
        return [mk("local", "invalid", 1, reason="missing field"), mk("local", "ok", 2, final=True, base_cost=baseline)]
    if r < 0.90:
        return [mk("local", "invalid", 1, reason="missing field"), mk("local", "invalid", 2, reason="missing field"),
                mk("cloud", "ok", 3, **cloud_ok)]
    reason, outcome = rnd.choice([("timeout", "error"), ("unreachable", "error"), ("busy", "error"),
                                  ("breaker_open", "skipped")])
    return [mk("local", outcome, 1, reason=reason, used=False), mk("cloud", "ok", 2, **cloud_ok)]


def build(path: Path, rows: int) -> float:
    """Create the ledger at `path` with `rows` attempts; returns the seconds it took."""
    started = time.perf_counter()
    ledger = Ledger(path)
    db = ledger.connection
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-400000")
    indexes = [sql for (sql,) in db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'attempts' AND sql IS NOT NULL")]
    marks = ", ".join("?" for _ in ATTEMPT_COLUMNS)
    db.execute("BEGIN")
    for sql in indexes:  # rebuilt below from the same statements: a bulk build is much faster
        db.execute("DROP INDEX " + sql.split()[2])
    runs: list[tuple[str, str, float]] = []
    db.executemany(f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({marks})", attempts(rows, runs))
    db.executemany("INSERT INTO runs (run_id, session, started_at, finished_at, root, jobs) "
                   "VALUES (?, ?, ?, ?, '/', 0)", ((r, s, t, t + 60) for r, s, t in runs))
    db.executemany("INSERT INTO breaker_events (run_id, ts, state, reason) VALUES (?, ?, 'open', ?)",
                   ((r, t + 30, "p95 41.0s > 30s") for r, _, t in runs[::7]))
    for sql in indexes:
        db.execute(sql)
    db.execute("COMMIT")
    ledger.close()
    return time.perf_counter() - started


def timed(db: object, scope: Scope, *, by_day: bool = False, repeat: int = 5) -> tuple[float, float, int]:
    import sqlite3

    assert isinstance(db, sqlite3.Connection)
    times = []
    jobs = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        status = summarize(db, scope, cooldown_s=60.0, by_day=by_day)
        times.append(time.perf_counter() - t0)
        jobs = status.totals.jobs
    return min(times), statistics.median(times), jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the ledger in this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"ledger-{args.rows}.db"
        if not path.exists():
            print(f"building a {args.rows:,}-attempt ledger in {folder} ...", flush=True)
            print(f"  built in {build(path, args.rows):.1f} s ({path.stat().st_size / 2**20:.0f} MiB)")
        ledger = Ledger(path)
        db = ledger.connection
        session = db.execute("SELECT session FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
        since = db.execute("SELECT MAX(ts) FROM attempts").fetchone()[0] - 7 * 86400
        print(f"router-status figures (status.summarize), best / median of 5, {args.rows:,} attempts:")
        for label, scope, by_day in (("--all", Scope("all"), False),
                                     ("--since 7d", Scope("since", since=since), False),
                                     (f"--session {session}", Scope("session", session=session), False),
                                     ("--all --by day", Scope("all"), True)):
            best, median, jobs = timed(db, scope, by_day=by_day)
            print(f"  {label:<28} {best * 1000:7.0f} ms / {median * 1000:7.0f} ms   ({jobs:,} jobs)")
        ledger.close()


if __name__ == "__main__":
    main()
