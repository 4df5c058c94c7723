"""scripts/nightly.sh: the order of the steps, Ollama always turned off, the run's exit code passed through.

`ollama on|off` and `router-status` are stood in for by a fake `ollama-dist` that
records its arguments; `run` goes to the real CLI against the loopback servers
(or, to pin an exit code, is faked too).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollama_dist.integrations.cron import lock
from tests.run.test_run import task_file

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "nightly.sh"

FAKE = textwrap.dedent("""\
    #!{python}
    import json, os, subprocess, sys, time
    args = sys.argv[1:]
    with open(os.environ["NIGHTLY_CALLS"], "a") as f:
        f.write(json.dumps(args) + "\\n")
    step = "_".join(args[:2] if args[0] == "ollama" else args[:1]).replace("-", "_").upper()
    if os.environ.get("FAKE_" + step + "_SLEEP"):
        time.sleep(float(os.environ["FAKE_" + step + "_SLEEP"]))
    if step == "RUN" and "FAKE_RUN_EXIT" not in os.environ:
        sys.exit(subprocess.call([sys.executable, "-m", "ollama_dist.cli", *args]))
    if step == "ROUTER_STATUS":
        print(json.dumps({{"jobs": 1}}))
    else:
        print("fake", *args)  # chatter on stdout, as a real command may print
    sys.exit(int(os.environ.get("FAKE_" + step + "_EXIT", "0")))
    """)

ON = ["ollama", "on", "--warm", "gemma3:270m"]
STATUS = ["router-status", "--since", "1d", "--json"]
OFF = ["ollama", "off"]


@pytest.fixture
def world(isolated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.anthropic import AnthropicServer
    from tests.servers.ollama import FakeOllama

    fake = tmp_path / "bin" / "ollama-dist"
    fake.parent.mkdir()
    fake.write_text(FAKE.format(python=sys.executable))
    fake.chmod(0o755)
    with FakeOllama(models=("gemma3:270m",)) as ollama, AnthropicServer(key="test-key") as claude:
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        monkeypatch.setenv("OLLAMA_DIST", str(fake))
        monkeypatch.setenv("NIGHTLY_CALLS", str(tmp_path / "calls"))
        Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\ncloud: {max_retries: 0}\n")
        yield {"ollama": ollama, "claude": claude, "home": isolated_home, "calls": tmp_path / "calls"}


def nightly(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def calls(world: dict[str, Any]) -> list[list[str]]:
    path: Path = world["calls"]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_whole_night_against_the_loopback_servers(world: dict[str, Any]) -> None:
    world["ollama"].script(['{"city": "Lisbon"}'] * 2)
    task_file(Path("tasks/nightly"), count=2)
    done = nightly()
    assert done.returncode == 0, done.stderr
    assert calls(world) == [ON, ["run", "--batch-id", "nightly", "tasks/nightly"], STATUS, OFF]
    assert json.loads(done.stdout) == {"jobs": 1}  # router-status --json is what reaches stdout
    (log,) = sorted((world["home"] / "logs").glob("nightly-*.log"))
    assert '"status": "ok"' in log.read_text() and log.read_text().rstrip().endswith("exit code 0")


def test_a_failed_job_is_exit_1_and_ollama_still_goes_off(world: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    Path("t").mkdir()
    Path("t/why.yaml").write_text("name: why\nprompt: Why does this design trade latency for safety?\n")
    done = nightly("t", NIGHTLY_BATCH="adhoc", NIGHTLY_MODEL="qwen3:0.6b")
    assert done.returncode == 1
    assert calls(world) == [["ollama", "on", "--warm", "qwen3:0.6b"], ["run", "--batch-id", "adhoc", "t"],
                            STATUS, OFF]


@pytest.mark.parametrize("code", [0, 1, 2, 130])
def test_the_run_exit_code_passes_through(world: dict[str, Any], code: int) -> None:
    done = nightly("tasks/a.yaml", "tasks/b", FAKE_RUN_EXIT=str(code))
    assert done.returncode == code
    assert calls(world) == [ON, ["run", "--batch-id", "nightly", "tasks/a.yaml", "tasks/b"], STATUS, OFF]


def test_batch_still_running_exits_75_and_leaves_ollama_on(world: dict[str, Any]) -> None:
    task_file(Path("tasks/nightly"))
    with lock.acquire(world["home"], "nightly"):  # the previous night's run, still going
        done = nightly()
    assert done.returncode == 75
    assert "batch nightly is already running" in done.stderr
    assert calls(world) == [ON, ["run", "--batch-id", "nightly", "tasks/nightly"]]  # no status, no off
    assert world["ollama"].requests == []


def test_without_ollama_the_night_goes_on_and_says_so(world: dict[str, Any]) -> None:
    """`ollama on` fails as it does with no `ollama` installed (exit 2); the run still goes ahead:
    here the local server is down, so the jobs go to Claude (the loopback server) and end ok."""
    world["ollama"].stop()
    task_file(Path("tasks/nightly"), count=2)
    done = nightly(FAKE_OLLAMA_ON_EXIT="2")
    assert done.returncode == 0, done.stderr
    assert "ollama on failed (exit 2); going on without Ollama" in done.stderr
    assert "embedded" in done.stderr
    assert calls(world) == [ON, ["run", "--batch-id", "nightly", "tasks/nightly"], STATUS, OFF]
    assert sum(r.path.startswith("/v1/messages") for r in world["claude"].requests) == 2
    (log,) = sorted((world["home"] / "logs").glob("nightly-*.log"))
    assert log.read_text().rstrip().endswith("exit code 0")


@pytest.mark.parametrize("code", [0, 1])
def test_without_ollama_the_run_exit_code_still_passes_through(world: dict[str, Any], code: int) -> None:
    done = nightly(FAKE_OLLAMA_ON_EXIT="1", FAKE_RUN_EXIT=str(code))
    assert done.returncode == code
    assert calls(world) == [ON, ["run", "--batch-id", "nightly", "tasks/nightly"], STATUS, OFF]


def test_router_status_or_off_failing_does_not_hide_the_run_result(world: dict[str, Any]) -> None:
    done = nightly(FAKE_RUN_EXIT="0", FAKE_ROUTER_STATUS_EXIT="3", FAKE_OLLAMA_OFF_EXIT="4")
    assert done.returncode == 0
    assert "router-status failed (exit 3)" in done.stderr and "ollama off failed (exit 4)" in done.stderr
    failed = nightly(FAKE_RUN_EXIT="1", FAKE_OLLAMA_OFF_EXIT="4")
    assert failed.returncode == 1


def test_a_killed_night_still_turns_ollama_off(world: dict[str, Any]) -> None:
    proc = subprocess.Popen(["bash", str(SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "FAKE_RUN_SLEEP": "600"}, start_new_session=True)
    try:
        for _ in range(1200):  # until the run is under way
            if any(c[0] == "run" for c in calls(world)) or proc.poll() is not None:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)  # what cron or systemd does to the whole job
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143
    assert calls(world)[-1] == OFF


def test_script_is_strict_and_executable() -> None:
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert os.access(SCRIPT, os.X_OK)
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
