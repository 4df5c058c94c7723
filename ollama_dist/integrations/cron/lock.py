"""Unattended batch runs: the lock that keeps two runs of one batch from overlapping, and their log.

`acquire(home, "nightly")` takes `home/locks/nightly.lock` with `fcntl.flock`. The
operating system drops a flock when its holder dies, even by `kill -9`, so the
lock is never left held by a dead process. The file also holds who took it (pid,
host, start time) for the "already running" message. A clean release empties the
file; a file that still names a holder although nobody holds the flock was left by a
killed run, and is taken over (said on stderr and in the new run's log). The file
itself is never deleted: deleting a lock file while another process has it open is
the classic way to end up with two holders.

Each run also gets a log file, `home/logs/NAME-YYYYmmdd-HHMMSS.log`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from ollama_dist.errors import InputError, LockedError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a batch lock."""

    pid: int | None
    host: str | None
    started: str | None  # ISO 8601, local time, to the second

    @classmethod
    def me(cls, now: datetime) -> Holder:
        return cls(os.getpid(), socket.gethostname(), now.isoformat(timespec="seconds"))

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder a lock file names; None for an empty (cleanly released) file."""
        if not text.strip():
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return cls(None, None, None)
        if not isinstance(data, dict):
            return cls(None, None, None)
        pid, host, started = data.get("pid"), data.get("host"), data.get("started")
        return cls(pid if isinstance(pid, int) else None, host if isinstance(host, str) else None,
                   started if isinstance(started, str) else None)

    def dump(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "started": self.started}) + "\n"

    def describe(self) -> str:
        pid = f"pid {self.pid}" if self.pid is not None else "pid unknown"
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        return f"{pid}{where} since {self.started or 'an unknown time'}"


class Lock:
    """A held batch lock. Release it (or leave the `with` block) when the run ends."""

    def __init__(self, name: str, path: Path, fd: int, holder: Holder, log_path: Path,
                 stale: Holder | None) -> None:
        self.name = name
        self.path = path
        self.holder = holder
        self.log_path = log_path
        self.stale = stale
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def log(self, *lines: str) -> None:
        """Append lines to this run's log file."""
        with self.log_path.open("a", encoding="utf-8") as f:
            for line in lines:
                f.write(line if line.endswith("\n") else line + "\n")

    def release(self) -> None:
        """Empty the lock file (a clean end), then drop the flock. Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_name(batch_id: str) -> str:
    if not re.match(NAME_PATTERN, batch_id):
        raise InputError(f"batch id {batch_id!r} is not a plain name", field="--batch-id",
                         hint="use letters, digits, `.`, `_` and `-` (up to 64), e.g. `nightly`")
    return batch_id


def log_path(home: Path, batch_id: str, now: datetime) -> Path:
    return home / "logs" / f"{batch_id}-{now.strftime('%Y%m%d-%H%M%S')}.log"


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def acquire(home: Path, batch_id: str, *, now: datetime | None = None, stderr: TextIO | None = None) -> Lock:
    """Take the lock of batch `batch_id`, or raise LockedError (exit 75) if a live run holds it."""
    name = check_name(batch_id)
    now = now or datetime.now().astimezone()
    path = home / "locks" / f"{name}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(f"cannot open the lock file {path}: {exc.strerror}",
                         hint="check that the ollama-dist home is writable") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = Holder.parse(_read(fd)) or Holder(None, None, None)
        os.close(fd)
        raise LockedError(f"batch {name} is already running ({holder.describe()})",
                          hint=f"this run was skipped; the lock is {path}") from None
    except OSError as exc:
        os.close(fd)
        raise InputError(f"cannot lock {path}: {exc.strerror}") from exc
    try:
        stale = Holder.parse(_read(fd))
        me = Holder.me(now)
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.dump().encode(), 0)
        os.fsync(fd)
        lock = Lock(name, path, fd, me, log_path(home, name, now), stale)
        lock.log_path.parent.mkdir(parents=True, exist_ok=True)
        lock.log(f"batch {name}: started {me.started}, pid {me.pid} on {me.host}")
    except OSError as exc:
        os.close(fd)
        raise InputError(f"cannot write {exc.filename or path}: {exc.strerror}",
                         hint="check that the ollama-dist home is writable") from exc
    if stale is not None:
        note = f"note: took over the stale lock of batch {name} ({stale.describe()}; that run is gone)"
        (stderr or sys.stderr).write(note + "\n")
        lock.log(note)
    return lock
