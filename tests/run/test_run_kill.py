"""A run killed with SIGKILL mid-way loses nothing answered, and a re-run does only what is left."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.servers.ollama import FakeOllama

JOBS = 8


def ok_rows(db_path: Path) -> list[tuple[str, str]]:
    if not db_path.exists():
        return []
    db = sqlite3.connect(db_path, timeout=10)
    try:
        return db.execute("SELECT job_id, outcome FROM attempts WHERE outcome IN ('ok', 'cache_hit')").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def test_kill_9_then_rerun_completes_with_no_job_answered_twice(tmp_path: Path, isolated_home: Path) -> None:
    work = Path.cwd()
    (work / "ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    for i in range(JOBS):
        (work / f"in{i}.txt").write_text(f"Row {i}\n")
    (work / "t.yaml").write_text(
        "name: rows\nprompt: Extract the row number as JSON.\ninputs: {files: ['in*.txt']}\n"
        "output: {format: json, schema: {type: object}, write: 'out/{stem}.json'}\n")
    ledger = isolated_home / "ledger.db"
    with FakeOllama(models=("gemma3:270m",), latency_s=0.3) as server:
        env = {**os.environ, "OLLAMA_HOST": server.url, "OLLAMA_DIST_HOME": str(isolated_home)}
        env.pop("ANTHROPIC_API_KEY", None)
        cmd = [sys.executable, "-m", "ollama_dist.cli", "run", "t.yaml", "--json", "--quiet"]
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(ok_rows(ledger)) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = ok_rows(ledger)
        assert 3 <= len(before) < JOBS, "the run must be killed mid-way for this test to mean anything"
        sent_before = len(server.requests)
        # no half-written output: every output file present parses
        for out in (work / "out").glob("*.json"):
            json.loads(out.read_text())
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        sent_after = len(server.requests)
    statuses = [j["status"] for j in report["jobs"]]
    assert statuses == ["ok"] * JOBS
    cached = sum(j["cache_hit"] for j in report["jobs"])
    assert cached == len(before)
    # the re-run sent only the jobs that were not answered (the one in flight at the kill counts once more)
    assert sent_after - sent_before == JOBS - len(before)
    rows = ok_rows(ledger)
    answered = [job for job, outcome in rows if outcome == "ok"]
    assert sorted(answered) == sorted(set(answered)) and len(answered) == JOBS
    assert sorted(p.name for p in (work / "out").glob("*.json")) == sorted(f"in{i}.json" for i in range(JOBS))


def test_two_runs_at_once_share_the_ledger(tmp_path: Path, isolated_home: Path) -> None:
    work = Path.cwd()
    (work / "ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    for name in ("a", "b"):
        folder = work / name
        folder.mkdir()
        for i in range(5):
            (folder / f"in{i}.txt").write_text(f"{name} row {i}\n")
        (folder / "t.yaml").write_text(
            f"name: rows-{name}\nprompt: Extract the row number as JSON.\ninputs: {{files: ['in*.txt']}}\n"
            "output: {format: json, schema: {type: object}}\n")
    with FakeOllama(models=("gemma3:270m",), latency_s=0.05, num_parallel=2) as server:
        env = {**os.environ, "OLLAMA_HOST": server.url, "OLLAMA_DIST_HOME": str(isolated_home)}
        env.pop("ANTHROPIC_API_KEY", None)
        procs = [subprocess.Popen([sys.executable, "-m", "ollama_dist.cli", "run", f"{name}/t.yaml", "--json",
                                   "--quiet"], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for name in ("a", "b")]
        outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    reports = [json.loads(o[0]) for o in outs]
    db = sqlite3.connect(isolated_home / "ledger.db")
    for report in reports:
        rows = db.execute("SELECT COUNT(*) FROM attempts WHERE run_id = ? AND outcome = 'ok'",
                          (report["run_id"],)).fetchone()[0]
        assert rows == 5
    assert db.execute("SELECT COUNT(*) FROM runs WHERE exit_code = 0").fetchone()[0] == 2
