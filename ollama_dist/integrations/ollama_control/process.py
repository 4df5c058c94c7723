"""The local Ollama server that `ollama-dist ollama on|off` manage: start it (the systemd
unit `ollama.service` when there is one, else `ollama serve` in a session of its own,
its pid and log in the ollama-dist home), wait for it, warm a model, stop only what
was started here. ``server`` holds the commands and the status probe.

Nothing heavy is imported at module level: the CLI imports this module (via ``cli.ollama``).
The pid-level helpers (alive, reap, terminate a group) are ``pids``.
"""

from __future__ import annotations

import os
import shutil
import subprocess  # light (no asyncio); posix_spawn and waitpid are in os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ollama_dist.errors import InputError, OllamaDistError
from ollama_dist.integrations.ollama_control.pids import exit_code, terminate_group, write_atomic

if TYPE_CHECKING:
    import httpx

UNIT = "ollama.service"
PID_FILE = "ollama.pid"
UNIT_FILE = "ollama.unit"
LOG_FILE = "ollama.log"
DEFAULT_WARM_CTX = 2048  # what the Ollama backend asks for a short prompt: warming with it avoids a reload
INSTALL_HINT = ("install Ollama (https://ollama.com/download; on Linux: curl -fsSL https://ollama.com/install.sh "
                "| sh), or point OLLAMA_HOST at a server that runs elsewhere")
LOOPBACK = ("127.", "localhost", "[::1]", "::1")


# ----------------------------------------------------------------------------- the local server


@dataclass(frozen=True)
class Started:
    host: str
    action: Literal["already_running", "started", "started_unit"]
    version: str
    pid: int | None = None
    log: str | None = None
    warmed: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"host": self.host, "action": self.action, "version": self.version, "pid": self.pid,
                "log": self.log, "warmed": self.warmed}


@dataclass(frozen=True)
class Stopped:
    host: str
    action: Literal["stopped", "stopped_unit", "not_started_here", "stale_pid_file"]
    pid: int | None = None
    unloaded: tuple[str, ...] = field(default=())
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"host": self.host, "action": self.action, "pid": self.pid, "unloaded": list(self.unloaded),
                "detail": self.detail}


def is_local(base_url: str) -> bool:
    host = base_url.split("://", 1)[-1].rsplit(":", 1)[0]
    return host.startswith(LOOPBACK)


def pick_local_host(hosts: Sequence[str]) -> str:
    """The first configured host on this machine: the one `on` starts and `off` stops."""
    from ollama_dist.backends.ollama_probe import normalize_host

    for host in hosts:
        base = normalize_host(host)
        if is_local(base):
            return base
    raise InputError(f"no configured Ollama host is on this machine ({', '.join(hosts) or 'none'})",
                     hint="`ollama on` starts a local server: set OLLAMA_HOST=127.0.0.1:11434 or pass --host")


class LocalServer:
    """The Ollama server at `host` on this machine, and what ollama-dist started there.

    home: where the pid, unit marker and log files live (the ollama-dist home).
    env: the environment for finding `ollama` and `systemctl` (its PATH) and for the
        server itself (OLLAMA_HOST and the other OLLAMA_* settings pass through).
    client: an httpx.AsyncClient to use (not closed here); else one per call.
    proc: the folder of process information (/proc), to check a pid is still Ollama.
    """

    def __init__(self, home: Path, host: str, *, env: Mapping[str, str] | None = None,
                 client: httpx.AsyncClient | None = None, proc: Path = Path("/proc"),
                 num_parallel: int | None = None) -> None:
        from ollama_dist.backends.ollama_probe import normalize_host

        self.home = home
        self.base = normalize_host(host)
        self.env = dict(os.environ if env is None else env)
        self._client = client
        self._proc = proc
        self.num_parallel = num_parallel  # ollama.num_parallel for this host: OLLAMA_NUM_PARALLEL of what `on` starts

    @property
    def pid_path(self) -> Path:
        return self.home / PID_FILE

    @property
    def unit_path(self) -> Path:
        return self.home / UNIT_FILE

    @property
    def log_path(self) -> Path:
        return self.home / LOG_FILE

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.env.get("PATH", os.defpath))

    # -- probes -------------------------------------------------------------------------

    def _http(self) -> tuple[httpx.AsyncClient, bool]:
        import httpx

        if self._client is not None:
            return self._client, False
        return httpx.AsyncClient(trust_env=False), True

    async def version(self, timeout_s: float = 2.0) -> str | None:
        """The server's version; None when nothing listens there. Something that answers,
        or accepts and then says nothing, but is not Ollama raises: the port is taken."""
        from ollama_dist.backends.ollama_probe import get_version
        from ollama_dist.errors import BackendError, Unreachable

        http, owned = self._http()
        try:
            version = await get_version(http, self.base, timeout_s=timeout_s)
        except Unreachable:
            return None
        except BackendError as exc:
            raise OllamaDistError(
                f"{self.base} is taken by something that is not Ollama ({exc.message})",
                hint="stop it, or run Ollama on a free port: OLLAMA_HOST=127.0.0.1:11435 ollama-dist ollama on",
            ) from exc
        finally:
            if owned:
                await http.aclose()
        if not version:
            raise OllamaDistError(f"{self.base} answers /api/version without a version: it is not Ollama",
                                  hint="stop it, or run Ollama on a free port (OLLAMA_HOST=127.0.0.1:11435)")
        return version

    async def _post(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        import httpx

        from ollama_dist.backends.http import request_json
        from ollama_dist.backends.ollama_probe import START_HINT

        http, owned = self._http()
        try:
            return await request_json(http, "POST", f"{self.base}/api/generate", body=body,
                                      timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)), server="Ollama",
                                      model=str(body.get("model", "")), hint=START_HINT)
        finally:
            if owned:
                await http.aclose()

    async def warm(self, model: str, *, keep_alive: str | int, num_ctx: int, timeout_s: float) -> None:
        """Load `model` into memory now (a generate request without a prompt)."""
        await self._post({"model": model, "keep_alive": keep_alive, "options": {"num_ctx": num_ctx}}, timeout_s)

    async def unload_all(self, timeout_s: float = 30.0) -> tuple[str, ...]:
        """Ask the server to free every model it holds (keep_alive 0); the names freed."""
        from ollama_dist.backends.ollama_probe import list_loaded

        http, owned = self._http()
        try:
            loaded = await list_loaded(http, self.base, timeout_s=timeout_s)
        finally:
            if owned:
                await http.aclose()
        for model in loaded:
            await self._post({"model": model.name, "keep_alive": 0}, timeout_s)
        return tuple(m.name for m in loaded)

    # -- on -------------------------------------------------------------------------------

    async def on(self, *, timeout_s: float = 30.0, warm: str | None = None, keep_alive: str | int = "10m",
                 num_ctx: int = DEFAULT_WARM_CTX) -> Started:
        version = await self.version(min(timeout_s, 2.0))
        if version is not None:
            started = Started(self.base, "already_running", version)
        else:
            if not is_local(self.base):
                raise InputError(f"{self.base} is not on this machine: `ollama on` starts a local server only",
                                 hint="set OLLAMA_HOST=127.0.0.1:11434, or start Ollama on that machine")
            systemctl = self._systemd()
            if systemctl is not None:
                started = await self._start_unit(systemctl, timeout_s)
            else:
                started = await self._start_process(timeout_s)
        if warm:
            await self.warm(warm, keep_alive=keep_alive, num_ctx=num_ctx, timeout_s=max(timeout_s, 120.0))
            started = Started(started.host, started.action, started.version, started.pid, started.log, warm)
        return started

    def _systemd(self) -> str | None:
        """`systemctl` when it knows the unit `ollama.service` (an installed Ollama has one)."""
        systemctl = self.which("systemctl")
        if systemctl is None:
            return None
        try:
            done = subprocess.run([systemctl, "cat", UNIT], capture_output=True, env=self.env, timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return systemctl if done.returncode == 0 else None

    async def _start_unit(self, systemctl: str, timeout_s: float) -> Started:
        done = subprocess.run([systemctl, "start", UNIT], capture_output=True, text=True, env=self.env,
                              timeout=max(timeout_s, 15.0))
        if done.returncode != 0:
            raise OllamaDistError(f"`systemctl start {UNIT}` failed: {(done.stderr or done.stdout).strip()}",
                                  hint=f"run `sudo systemctl start {UNIT.removesuffix('.service')}`")
        self.home.mkdir(parents=True, exist_ok=True)
        self.unit_path.write_text(UNIT + "\n")
        version = await self._wait(timeout_s, pid=None)
        return Started(self.base, "started_unit", version)

    def _child_env(self) -> dict[str, str]:
        """The environment for `ollama serve`: the caller's, with OLLAMA_HOST naming the
        address waited on (kept as given when it already does, e.g. 0.0.0.0:11434), and
        OLLAMA_NUM_PARALLEL the configured slots of this host unless the caller set it."""
        from ollama_dist.backends.ollama_probe import normalize_host

        env = dict(self.env)
        given = env.get("OLLAMA_HOST", "")
        if not given or "," in given or normalize_host(given) != self.base:
            env["OLLAMA_HOST"] = self.base.split("://", 1)[-1]
        if self.num_parallel is not None and not env.get("OLLAMA_NUM_PARALLEL"):  # the caller's own wins
            env["OLLAMA_NUM_PARALLEL"] = str(self.num_parallel)
        return env

    async def _start_process(self, timeout_s: float) -> Started:
        binary = self.which("ollama")
        if binary is None:
            raise InputError("the `ollama` program is not installed (not found on PATH)", hint=INSTALL_HINT)
        if os.name != "posix":
            raise OllamaDistError("`ollama on` starts `ollama serve` on Linux and macOS only",
                                  hint="start the Ollama app yourself")
        self.home.mkdir(parents=True, exist_ok=True)
        pid = self._spawn(binary)
        write_atomic(self.pid_path, f"{pid}\n")
        try:
            version = await self._wait(timeout_s, pid=pid)
        except BaseException:
            terminate_group(pid, grace_s=5.0)
            self.pid_path.unlink(missing_ok=True)
            raise
        return Started(self.base, "started", version, pid=pid, log=str(self.log_path))

    def _spawn(self, binary: str) -> int:
        """`ollama serve` in a session (and process group) of its own, so it outlives this
        command and a terminal's hang-up; output appended to the log. posix_spawn rather
        than Popen: the server is meant to outlive this process, and waitpid tells an
        early exit."""
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(self.log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        try:
            return os.posix_spawn(binary, [binary, "serve"], self._child_env(), file_actions=actions, setsid=True)
        except OSError as exc:
            raise OllamaDistError(f"cannot start {binary} serve: {exc}", hint=INSTALL_HINT) from exc

    async def _wait(self, timeout_s: float, *, pid: int | None) -> str:
        import asyncio

        deadline = time.monotonic() + timeout_s
        while True:
            if pid is not None:
                code = exit_code(pid)
                if code is not None:
                    raise OllamaDistError(f"`ollama serve` exited (status {code}) before answering on {self.base}",
                                          hint=f"its log says: {self._log_tail()}")
            try:
                version = await self.version(timeout_s=1.0)
            except OllamaDistError:
                version = None  # a server still starting may answer oddly: wait on
            if version is not None:
                return version
            if time.monotonic() >= deadline:
                raise OllamaDistError(f"Ollama did not answer on {self.base} within {timeout_s:g}s",
                                      hint=f"see {self.log_path}" if pid is not None else
                                      f"see `journalctl -u {UNIT}`; the unit may listen on another OLLAMA_HOST")
            await asyncio.sleep(0.1)

    def _log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return f"(no log at {self.log_path})"
        return " | ".join(text[-lines:]) or "(empty)"

    # -- off ------------------------------------------------------------------------------

    async def off(self, *, unload: bool = False, timeout_s: float = 10.0) -> Stopped:
        unloaded: tuple[str, ...] = ()
        if unload and await self.version() is not None:
            unloaded = await self.unload_all()
        if self.unit_path.exists():
            systemctl = self.which("systemctl")
            if systemctl is None:
                raise OllamaDistError(f"`ollama on` started {UNIT}, but systemctl is not on PATH now")
            done = subprocess.run([systemctl, "stop", UNIT], capture_output=True, text=True, env=self.env,
                                  timeout=max(timeout_s, 15.0))
            if done.returncode != 0:
                raise OllamaDistError(f"`systemctl stop {UNIT}` failed: {(done.stderr or done.stdout).strip()}",
                                      hint=f"run `sudo systemctl stop {UNIT.removesuffix('.service')}`")
            self.unit_path.unlink(missing_ok=True)
            return Stopped(self.base, "stopped_unit", unloaded=unloaded)
        pid = self.started_pid()
        if pid is None:
            return Stopped(self.base, "not_started_here", unloaded=unloaded,
                           detail="ollama-dist did not start a server here; nothing stopped")
        if not self.is_ollama(pid):
            self.pid_path.unlink(missing_ok=True)
            return Stopped(self.base, "stale_pid_file", pid=pid, unloaded=unloaded,
                           detail=f"process {pid} is gone or is not `ollama serve`; nothing stopped")
        terminate_group(pid, grace_s=timeout_s)
        self.pid_path.unlink(missing_ok=True)
        return Stopped(self.base, "stopped", pid=pid, unloaded=unloaded)

    def started_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def is_ollama(self, pid: int) -> bool:
        """Is `pid` alive and running `ollama serve` (the binary, or a script named ollama)?"""
        args = self._cmdline(pid)
        if not args:
            return False
        return "serve" in args[1:] and any(Path(arg).name == "ollama" for arg in args[:2])

    def _cmdline(self, pid: int) -> list[str]:
        path = self._proc / str(pid) / "cmdline"
        if self._proc.is_dir():
            try:
                return [a for a in path.read_bytes().decode(errors="replace").split("\0") if a]
            except OSError:
                return []  # gone (a zombie has an empty cmdline too)
        try:  # no /proc (macOS): ask ps
            out = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return []
        return out.stdout.split()
