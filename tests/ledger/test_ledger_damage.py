"""A damaged, read-only or strange ledger: one clear error (exit 2) naming the file, or a
read that works; never a traceback. And `router-status --since` out of any date's range."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.ledger.store import Attempt, Ledger, read_only_uri

runner = CliRunner()
TASK = "name: notes\nprompt: Summarise the notes.\ninputs: {text: n}\n"
READERS = (["router-status", "--all", "--json"], ["router-status", "--json"], ["route", "t.yaml", "--json"])


def fill(path: Path, jobs: int = 2000) -> None:
    """A ledger of many pages, closed cleanly (no -wal / -shm left)."""
    ledger = Ledger(path)
    ledger.start_run("r", "s", "/", None, jobs)
    for job in range(jobs):
        ledger.record(Attempt(run_id="r", session="s", job_id=f"j{job}", task="notes", task_fingerprint="f",
                              input_hash=f"h{job}", models_key="m", routed_to="local", lane="local",
                              backend="ollama", model="gemma3:270m", attempt=1, outcome="ok", final=True,
                              reason="x" * 40))
    ledger.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.close()
    assert not list(path.parent.glob(path.name + "-*"))


@pytest.fixture
def ledger(isolated_home: Path) -> Path:
    Path("t.yaml").write_text(TASK)
    path = isolated_home / "ledger.db"
    fill(path)
    return path


def clean_error(args: list[str], path: Path, *words: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert "Traceback" not in result.output and not isinstance(result.exception, sqlite3.Error)
    assert f"the ledger {path}" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    return result.stderr


def corrupt_page(path: Path, page: int) -> None:
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    assert len(data) > size * (page + 1), "the ledger is too small for that page"
    data[size * page:size * (page + 1)] = b"\xff" * size
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("page", [3, 20], ids=["index-page", "table-page"])
def test_a_corrupt_page_is_one_clear_error(ledger: Path, page: int) -> None:
    corrupt_page(ledger, page)
    failed = 0
    for args in (*READERS, ["run", "t.yaml", "--dry-run"]):
        result = runner.invoke(app, args)
        assert result.exit_code in (0, 2), (args, result.output, result.exception)
        if result.exit_code == 2:
            failed += 1
            assert f"the ledger {ledger}" in result.stderr and "move it aside" in result.stderr
    assert failed  # the damaged page is read by at least the full status


def test_a_dropped_table_is_one_clear_error(ledger: Path) -> None:
    db = sqlite3.connect(ledger)
    db.execute("DROP TABLE attempts")
    db.commit()
    db.close()
    for args in (*READERS, ["run", "t.yaml"]):
        clean_error(args, ledger, "no such table: attempts", f"mv {ledger} {ledger}.damaged")


def test_a_file_that_is_not_a_database(isolated_home: Path) -> None:
    Path("t.yaml").write_text(TASK)
    path = isolated_home / "ledger.db"
    path.write_bytes(b"not sqlite at all " * 500)
    for args in (*READERS, ["run", "t.yaml"]):
        clean_error(args, path, "not a database", "move it aside")


def test_a_ledger_path_under_a_file(isolated_home: Path) -> None:
    Path("t.yaml").write_text(TASK)
    (isolated_home / "file").write_text("x")
    (isolated_home / "config.yaml").write_text(f"ledger: {{path: {isolated_home / 'file' / 'ledger.db'}}}\n")
    clean_error(["run", "t.yaml"], isolated_home / "file" / "ledger.db", "cannot open")


# ------------------------------------------------------------------ read-only


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """Make a file or folder read-only for this process: chmod, or `chattr +i` for root
    (which file modes do not stop). Skips where neither can."""
    made: list[Path] = []
    root = os.geteuid() == 0

    def make(path: Path) -> None:
        if root:
            chattr = shutil.which("chattr")
            if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode:
                pytest.skip("running as root, and `chattr +i` is not available here")
        else:
            path.chmod(0o555 if path.is_dir() else 0o444)
        made.append(path)
        probe = path / "probe" if path.is_dir() else path
        try:
            with probe.open("a"):
                pass
        except OSError:
            return
        pytest.skip(f"cannot make {path} read-only here")

    yield make
    for path in reversed(made):
        if root:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.parametrize("what", ["file", "folder", "both"])
def test_a_read_only_ledger_can_still_be_read(ledger: Path, read_only: Callable[[Path], None], what: str) -> None:
    before = ledger.read_bytes()
    if what in ("file", "both"):
        read_only(ledger)
    if what in ("folder", "both"):
        read_only(ledger.parent)
    for args in READERS:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
    status = runner.invoke(app, ["router-status", "--all", "--json"])
    assert '"jobs": 2000' in status.stdout
    assert ledger.read_bytes() == before
    # writing is refused with the file named and a hint, not a traceback
    clean_error(["run", "t.yaml"], ledger, "permissions")


def test_a_reader_does_not_migrate_or_switch_the_journal(ledger: Path) -> None:
    db = sqlite3.connect(ledger)
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    before = ledger.read_bytes()
    reader = Ledger(ledger, read_only=True)
    assert reader.read_only and reader.history(["notes"])["notes"].local_jobs == 2000
    reader.close()
    assert ledger.read_bytes() == before
    assert not list(ledger.parent.glob(ledger.name + "-*"))


def test_a_reader_of_an_older_ledger_upgrades_it_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP INDEX attempts_run")
    db.execute("DELETE FROM schema_migrations WHERE name = '0004_attempts_by_run'")
    db.commit()
    db.close()
    reader = Ledger(path, read_only=True)
    assert not reader.read_only  # it had to write, once
    reader.close()
    assert Ledger(path, read_only=True).read_only


def old_ledger(path: Path, before: str) -> None:
    """A ledger as a version before migration `before` left it, with a few rows of its time."""
    from ollama_dist.ledger.migrations import MIGRATIONS

    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for name, sql in MIGRATIONS[:[n for n, _ in MIGRATIONS].index(before)]:
        db.executescript(sql)
        db.execute("INSERT INTO schema_migrations VALUES (?, 0)", (name,))
    db.execute("INSERT INTO runs (run_id, session, started_at, root, jobs) VALUES ('r', 's', 1, '/', 2)")
    for job, lane, outcome, cost, baseline in (("a", "local", "ok", 0.0, 0.004), ("b", "cloud", "ok", 0.001, 0.003)):
        db.execute("INSERT INTO attempts (run_id, session, ts, job_id, task, task_fingerprint, input_hash, models_key, "
                   "routed_to, lane, backend, model, attempt, outcome, final, latency_s, cost_usd, baseline_cost_usd) "
                   "VALUES ('r', 's', 2, ?, 't', 'f', ?, 'm', 'local', ?, 'x', 'm', 1, ?, 1, 1.5, ?, ?)",
                   (job, job, lane, outcome, cost, baseline))
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


@pytest.mark.parametrize("writable", [True, False], ids=["upgraded", "read-only"])
def test_a_ledger_from_before_the_accounting_columns_is_read(isolated_home: Path, writable: bool,
                                                            read_only: Callable[[Path], None]) -> None:
    path = isolated_home / "ledger.db"
    old_ledger(path, "0009_wait_and_unanswered_baseline")
    if not writable:
        read_only(path)
        read_only(isolated_home)
    before = path.read_bytes()
    for args in (["router-status", "--all", "--json"], ["router-status", "--all", "--by", "day"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
    data = json.loads(runner.invoke(app, ["router-status", "--all", "--json"]).stdout)
    assert (data["jobs"], data["local"], data["escalated"]) == (2, 1, 1)
    assert data["baseline_cost_usd"] == pytest.approx(0.007) and data["savings_usd"] == pytest.approx(0.006)
    assert data["p95_latency_s"] == {"local": 1.5, "cloud": 1.5} and data["p95_wait_s"] == {}
    columns = [row[1] for row in sqlite3.connect(read_only_uri(path), uri=True).execute("PRAGMA table_info(attempts)")]
    assert ("wait_s" in columns) is writable  # upgraded once where it could be, read as it is where not
    if not writable:
        assert path.read_bytes() == before


# ------------------------------------------------------------------ --since


@pytest.mark.parametrize("since", ["99999999999999d", "9" * 400 + "w", "0001-01-01"], ids=["days", "huge", "year-1"])
def test_router_status_since_beyond_any_date_is_a_clear_error(isolated_home: Path, since: str) -> None:
    fill(isolated_home / "ledger.db", jobs=3)
    for args in (["router-status", "--since", since], ["router-status", "--since", since, "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert "--since" in result.stderr and "hint:" in result.stderr
