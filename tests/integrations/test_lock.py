"""The batch lock and `ollama-dist run --batch-id`: unattended runs, end to end on the loopback servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.errors import EXIT_LOCKED, InputError, LockedError
from ollama_dist.integrations.cron import lock
from tests.run.test_run import ledger_rows, task_file

runner = CliRunner()
ANSI = "\x1b["


# ---------------------------------------------------------------------- the lock itself


def test_second_acquirer_is_refused_with_holder_and_exit_75(isolated_home: Path) -> None:
    when = datetime(2026, 11, 24, 2, 30, 0).astimezone()
    with lock.acquire(isolated_home, "nightly", now=when) as held:
        assert held.held and held.stale is None
        with pytest.raises(LockedError) as caught:
            lock.acquire(isolated_home, "nightly")
        assert caught.value.exit_code == EXIT_LOCKED == 75
        assert caught.value.message == f"batch nightly is already running (pid {os.getpid()} since {when.isoformat()})"
        with lock.acquire(isolated_home, "weekly"):  # another batch is another lock
            pass
    assert not held.held
    assert (isolated_home / "locks" / "nightly.lock").read_text() == ""  # a clean release empties it
    with lock.acquire(isolated_home, "nightly") as again:
        assert again.stale is None


def test_a_lock_file_left_without_a_holder_is_taken_over(isolated_home: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = isolated_home / "locks" / "nightly.lock"
    path.parent.mkdir()
    path.write_text(json.dumps({"pid": 999999, "host": "elsewhere", "started": "2026-11-23T02:30:00+00:00"}))
    with lock.acquire(isolated_home, "nightly") as held:
        assert held.stale is not None and held.stale.pid == 999999
        assert json.loads(path.read_text())["pid"] == os.getpid()
        log = held.log_path.read_text()
    err = capsys.readouterr().err
    assert "took over the stale lock of batch nightly (pid 999999 on elsewhere since 2026-11-23T02:30:00" in err
    assert "took over the stale lock" in log


@pytest.mark.parametrize("name", ["../escape", "", "a b", "x" * 65, "-dash"])
def test_batch_names_are_plain(isolated_home: Path, name: str) -> None:
    with pytest.raises(InputError):
        lock.acquire(isolated_home, name)


def test_log_path_names_batch_and_start() -> None:
    when = datetime(2026, 11, 24, 2, 30, 5)
    assert lock.log_path(Path("/h"), "nightly", when) == Path("/h/logs/nightly-20261124-023005.log")


# ---------------------------------------------------------------------- run --batch-id


@pytest.fixture
def world(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    from tests.servers.anthropic import AnthropicServer
    from tests.servers.ollama import FakeOllama

    with FakeOllama(models=("gemma3:270m",)) as ollama, AnthropicServer(key="test-key") as claude:
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\ncloud: {max_retries: 0}\n")
        yield {"ollama": ollama, "claude": claude, "home": isolated_home}


def batch_logs(home: Path, name: str) -> list[Path]:
    return sorted((home / "logs").glob(f"{name}-*.log"))


def logged_report(path: Path) -> dict[str, Any]:
    lines = path.read_text().splitlines()
    start = lines.index("{")
    end = lines.index("}", start)
    return dict(json.loads("\n".join(lines[start:end + 1])))


def test_batch_run_end_to_end_writes_its_log_and_releases_the_lock(world: dict[str, Any]) -> None:
    world["ollama"].script(['{"city": "Lisbon"}', "nope", "still nope"])
    path = task_file(Path("t"), count=2)
    result = runner.invoke(app, ["run", str(path), "--batch-id", "nightly", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    (log,) = batch_logs(world["home"], "nightly")
    assert log.name.startswith("nightly-20") and log.suffix == ".log"
    text = log.read_text()
    assert text.startswith("batch nightly: started ") and text.rstrip().endswith("exit code 0")
    report = logged_report(log)
    assert report["run_id"] == data["run_id"] and report["totals"] == data["totals"]
    assert [j["status"] for j in report["jobs"]] == ["ok", "ok"]
    assert len(ledger_rows(world["home"], data["run_id"])) >= 2
    assert (world["home"] / "locks" / "nightly.lock").read_text() == ""
    # the lock was released: the next run of the batch goes ahead, with a log of its own
    assert runner.invoke(app, ["run", str(path), "--batch-id", "nightly", "--quiet"]).exit_code == 0


def test_batch_run_exit_code_and_notes_reach_the_log(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    Path("why.yaml").write_text("name: why\nprompt: Why does this design trade latency for safety?\n")
    result = runner.invoke(app, ["run", "why.yaml", "--batch-id", "nightly"])
    assert result.exit_code == 1
    text = batch_logs(world["home"], "nightly")[0].read_text()
    assert "note: jobs that need Claude failed: set ANTHROPIC_API_KEY" in text
    assert text.rstrip().endswith("exit code 1")
    assert logged_report(batch_logs(world["home"], "nightly")[0])["jobs"][0]["status"] == "failed"


def test_batch_run_has_no_colour_and_no_progress(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # Rich would colour (and draw progress) everywhere
    world["ollama"].script(['{"city": "A"}'] * 4)
    path = task_file(Path("t"), count=2)
    normal = runner.invoke(app, ["run", str(path), "--root", "."])
    assert normal.exit_code == 0 and ANSI in normal.stdout  # the check below can fail
    Path("t/in0.txt").write_text("Our office moved to town number 7.\n")  # new work, not a cache hit
    batch = runner.invoke(app, ["run", str(path), "--batch-id", "nightly"])
    assert batch.exit_code == 0
    assert ANSI not in batch.stdout and ANSI not in batch.stderr
    assert "city" in batch.stdout  # the tables are still there, in plain text


def test_bad_input_in_a_batch_run_exits_2_and_releases_the_lock(world: dict[str, Any]) -> None:
    Path("bad.yaml").write_text("name: a\nprompt: P\noutput: {formt: json}\n")
    result = runner.invoke(app, ["run", "bad.yaml", "--batch-id", "nightly"])
    assert result.exit_code == 2 and "did you mean `format`" in result.stderr
    assert (world["home"] / "locks" / "nightly.lock").read_text() == ""
    with lock.acquire(world["home"], "nightly") as again:
        assert again.stale is None


def test_bad_batch_name_exits_2(world: dict[str, Any]) -> None:
    result = runner.invoke(app, ["run", "x.yaml", "--batch-id", "../up"])
    assert result.exit_code == 2 and "not a plain name" in result.stderr


# ---------------------------------------------------------------------- a live run, then a killed one


def _wait_for(condition: Any, what: str, proc: subprocess.Popen[bytes]) -> None:
    """Poll until `condition()` holds (the holder is a separate process); fail if it dies first."""
    for _ in range(1200):
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the first run exited ({proc.returncode}) before {what}: "
                                 f"{proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_live_run_holds_the_batch_and_a_killed_one_leaves_a_stale_lock(world: dict[str, Any]) -> None:
    home, ollama = world["home"], world["ollama"]
    path = task_file(Path("t"), extra="timeout_s: 600\n")
    ollama.fault("stall", seconds=600)  # the first run's local call hangs: it is alive, mid-run
    first = subprocess.Popen([sys.executable, "-m", "ollama_dist.cli", "run", str(path), "--batch-id", "nightly",
                              "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lock_file = home / "locks" / "nightly.lock"
    try:
        _wait_for(lambda: lock_file.exists() and f'"pid": {first.pid}' in lock_file.read_text(),
                  "it took the lock", first)
        _wait_for(lambda: len(ollama.requests) == 1, "its local call", first)

        second = runner.invoke(app, ["run", str(path), "--batch-id", "nightly", "--json"])
        assert second.exit_code == 75
        assert f"error: batch nightly is already running (pid {first.pid} since " in second.stderr
        error = json.loads(second.stdout)["error"]  # --json: the same error, for the script
        assert (error["type"], error["exit_code"]) == ("LockedError", 75)
        assert len(ollama.requests) == 1 and world["claude"].requests == []  # it ran nothing
        assert len(batch_logs(home, "nightly")) == 1  # and left no log of its own
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    assert f'"pid": {first.pid}' in lock_file.read_text()  # the killed run could not clean up

    ollama.script(['{"city": "Lisbon"}'])
    third = runner.invoke(app, ["run", str(path), "--batch-id", "nightly", "--json"])
    assert third.exit_code == 0, third.stderr
    assert f"took over the stale lock of batch nightly (pid {first.pid} since " in third.stderr
    assert json.loads(third.stdout)["jobs"][0]["status"] == "ok"
    newest = batch_logs(home, "nightly")[-1]
    assert "took over the stale lock" in newest.read_text() and lock_file.read_text() == ""
