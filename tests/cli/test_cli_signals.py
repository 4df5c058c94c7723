"""Ctrl-C and SIGTERM at the CLI (cli/route_run.py `_until_signalled`): the first cancels the run
and lets it report what finished; a second ends the process at once, whatever the first is still
waiting for (a worker thread, a slow clean-up). Each case runs in a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# a run whose clean-up, once cancelled, waits CLEANUP_S seconds in a worker thread (as asyncio.run
# waits for an llama.cpp generation in the default executor)
SCRIPT = textwrap.dedent("""\
    import asyncio, sys, time
    from ollama_dist.cli.route_run import _until_signalled

    async def run():
        print("ready", flush=True)
        try:
            await asyncio.sleep(600)
        finally:
            await asyncio.to_thread(time.sleep, float(sys.argv[1]))
            print("cleaned up", flush=True)

    try:
        _until_signalled(run())
    except KeyboardInterrupt:
        print("interrupted once", flush=True)
        sys.exit(130)
    """)


def started(cleanup_s: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(cleanup_s)], cwd=REPO, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_signal_cancels_and_lets_the_run_clean_up(sig: signal.Signals) -> None:
    proc = started(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out == "cleaned up\ninterrupted once\n" and "Traceback" not in err


@pytest.mark.parametrize(("first", "second"), [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGTERM),
                                               (signal.SIGINT, signal.SIGTERM)], ids=["INT-INT", "TERM-TERM", "INT-TERM"])
def test_a_second_signal_stops_at_once(first: signal.Signals, second: signal.Signals) -> None:
    proc = started(600)  # the clean-up would take ten minutes
    proc.send_signal(first)
    try:
        proc.communicate(timeout=1.0)
        pytest.fail("the first signal must let the clean-up run")
    except subprocess.TimeoutExpired:
        pass
    proc.send_signal(second)
    out, err = proc.communicate(timeout=60)  # not ten minutes
    assert proc.returncode == 130
    assert "cleaned up" not in out and "interrupted again: stopping now" in err
