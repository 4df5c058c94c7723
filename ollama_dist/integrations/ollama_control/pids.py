"""Process helpers for the server `on` starts: the pid file written atomically, whether a pid lives,
its exit code when it is our child, and terminating its process group (TERM, then KILL)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def exit_code(pid: int) -> int | None:
    """The exit status of our child `pid` if it has ended (reaping it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None if alive(pid) else 0
    return os.waitstatus_to_exitcode(status) if done else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def terminate_group(pid: int, *, grace_s: float) -> None:
    """SIGTERM to the process group `pid` leads (its runners too), SIGKILL after `grace_s`."""
    def send(sig: signal.Signals) -> None:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        exit_code(pid)  # reaps it when it is our child
        if not alive(pid):
            return
        time.sleep(0.05)
    send(signal.SIGKILL)
    for _ in range(100):
        exit_code(pid)
        if not alive(pid):
            return
        time.sleep(0.05)
