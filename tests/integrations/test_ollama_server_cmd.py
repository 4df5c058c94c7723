"""`ollama-dist ollama status|on|off` for real: a fake `ollama` program on PATH whose
`serve` runs the test Ollama server, a fake `systemctl`, real sockets and processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.integrations.ollama_control.probe import missing_models
from ollama_dist.integrations.ollama_control.process import LocalServer
from tests.servers.ollama import FakeOllama, refused_url

REPO = Path(__file__).resolve().parents[2]
FAKE_BIN = REPO / "tests" / "fake_bin"
runner = CliRunner()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def invoke(*args: str) -> tuple[int, Any, str]:
    result = runner.invoke(app, list(args))
    data = json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else None
    return result.exit_code, data, result.stderr


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def kill_group(pid: int) -> None:
    """Teardown: stop a server a test started (by its pid), and reap it when it is ours."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/api/version", timeout=2)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:  # shutting down: the connection was cut, not refused (yet)
        return False
    return False


@pytest.fixture
def pybin(tmp_path: Path) -> Path:
    """A folder with just `python3`, for the fake programs' shebangs (and no real ollama or systemctl)."""
    folder = tmp_path / "pybin"
    folder.mkdir()
    (folder / "python3").symlink_to(sys.executable)
    return folder


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch, pybin: Path, isolated_home: Path) -> Iterator[dict[str, Any]]:
    """A free local port as OLLAMA_HOST, the fake `ollama` first on PATH; the server stopped after."""
    port = free_port()
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{pybin}")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    yield {"url": url, "port": port, "home": isolated_home}
    pid_file = isolated_home / "ollama.pid"
    if pid_file.exists():
        kill_group(int(pid_file.read_text().split()[0]))


def test_on_status_off_round_trip(local: dict[str, Any]) -> None:
    home, url = local["home"], local["url"]
    code, started, err = invoke("ollama", "on", "--json")
    assert code == 0, err
    assert started["action"] == "started" and started["version"] == "0.15.5" and started["host"] == url
    pid = started["pid"]
    assert (home / "ollama.pid").read_text().split()[0] == str(pid)
    assert alive(pid) and os.getpgid(pid) == pid  # a process group (and session) of its own
    assert httpx.get(f"{url}/api/version").json() == {"version": "0.15.5"}
    assert "Listening on 127.0.0.1" in (home / "ollama.log").read_text()

    code, again, err = invoke("ollama", "on", "--json")
    assert code == 0 and again["action"] == "already_running" and again["pid"] is None
    assert "already running" in err and (home / "ollama.pid").read_text().split()[0] == str(pid)

    code, status, _ = invoke("ollama", "status", "--json")
    assert code == 0
    (host,) = status["hosts"]
    assert host["reachable"] is True and host["version"] == "0.15.5" and host["missing"] == []
    assert [m["name"] for m in host["models"]] == ["gemma3:270m"] and host["loaded"] == []
    assert status["all_reachable"] is True and status["managed"]["pid"] == pid

    code, stopped, err = invoke("ollama", "off", "--json")
    assert code == 0, err
    assert stopped["action"] == "stopped" and stopped["pid"] == pid
    assert not (home / "ollama.pid").exists() and not alive(pid)
    assert refused(url)


def test_on_starts_the_server_with_the_configured_slots(local: dict[str, Any]) -> None:
    (local["home"] / "config.yaml").write_text(f"ollama:\n  num_parallel: {{'{local['url']}': 3}}\n")
    code, _, err = invoke("ollama", "on", "--json")
    assert code == 0, err
    assert "OLLAMA_NUM_PARALLEL:3" in (local["home"] / "ollama.log").read_text()
    code, status, _ = invoke("ollama", "status", "--json")
    assert status["hosts"][0]["slots"] == 3
    assert invoke("ollama", "off")[0] == 0


def test_warm_loads_the_model_and_unload_frees_it(local: dict[str, Any]) -> None:
    code, started, err = invoke("ollama", "on", "--warm", "gemma3:270m", "--json")
    assert code == 0, err
    assert started["warmed"] == "gemma3:270m" and "is loaded" in err
    code, status, _ = invoke("ollama", "status", "--json")
    (loaded,) = status["hosts"][0]["loaded"]
    assert loaded["name"] == "gemma3:270m" and loaded["context_length"] == 2048 and loaded["size"] > 0
    code, stopped, _ = invoke("ollama", "off", "--unload", "--json")
    assert code == 0 and stopped["unloaded"] == ["gemma3:270m"] and stopped["action"] == "stopped"


def test_warm_with_a_model_not_pulled_says_how_to_pull_it(local: dict[str, Any]) -> None:
    code, _, err = invoke("ollama", "on", "--warm", "qwen3:0.6b")
    assert code == 1 and "ollama pull qwen3:0.6b" in err
    assert httpx.get(f"{local['url']}/api/version").status_code == 200  # the server itself is up


def test_not_installed_is_exit_2_with_an_install_hint(local: dict[str, Any], pybin: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(pybin))
    code, _, err = invoke("ollama", "on")
    assert code == 2
    assert "`ollama` program is not installed" in err and "install Ollama" in err
    assert not (local["home"] / "ollama.pid").exists()


def test_port_taken_by_something_else_is_refused_before_starting(local: dict[str, Any]) -> None:
    with socket.socket() as squatter:  # listens, never speaks HTTP
        squatter.bind(("127.0.0.1", local["port"]))
        squatter.listen(8)
        code, _, err = invoke("ollama", "on", "--timeout", "1")
    assert code == 1
    assert "is taken by something that is not Ollama" in err and "OLLAMA_HOST=" in err
    assert not (local["home"] / "ollama.pid").exists() and not (local["home"] / "ollama.log").exists()


def test_port_taken_by_another_web_server(local: dict[str, Any]) -> None:
    import http.server
    import threading

    class NotOllama(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    other = http.server.HTTPServer(("127.0.0.1", local["port"]), NotOllama)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        code, _, err = invoke("ollama", "on")
    finally:
        other.shutdown()
        other.server_close()
    assert code == 1 and "not Ollama" in err


def test_a_serve_that_crashes_is_reported_with_its_log(local: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OLLAMA_SERVE_EXIT", "3")
    code, _, err = invoke("ollama", "on")
    assert code == 1
    assert "exited (status 3)" in err and "fake crash on start" in err
    assert not (local["home"] / "ollama.pid").exists()


def test_a_serve_that_never_answers_times_out_and_is_stopped(local: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OLLAMA_SERVE_DELAY", "60")
    code, _, err = invoke("ollama", "on", "--timeout", "1")
    assert code == 1 and "did not answer" in err and "ollama.log" in err
    assert not (local["home"] / "ollama.pid").exists()
    assert refused(local["url"])


def test_off_never_stops_a_process_it_did_not_start(local: dict[str, Any]) -> None:
    import subprocess

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (local["home"] / "ollama.pid").write_text(f"{stranger.pid}\n")
        code, stopped, _ = invoke("ollama", "off", "--json")
        assert code == 0 and stopped["action"] == "stale_pid_file" and stopped["pid"] == stranger.pid
        assert stranger.poll() is None  # still running
        assert not (local["home"] / "ollama.pid").exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_off_leaves_a_server_it_did_not_start_but_can_unload_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOllama() as fake:
        monkeypatch.setenv("OLLAMA_HOST", fake.url)
        httpx.post(f"{fake.url}/api/generate", json={"model": "gemma3:270m", "keep_alive": "5m"})
        assert fake.loaded == {"gemma3:270m": 4096}
        code, stopped, err = invoke("ollama", "off", "--unload", "--json")
        assert code == 0 and stopped["action"] == "not_started_here" and stopped["unloaded"] == ["gemma3:270m"]
        assert "nothing stopped" in err
        assert fake.loaded == {} and httpx.get(f"{fake.url}/api/version").status_code == 200
        assert fake.requests[-1] == {"model": "gemma3:270m", "keep_alive": 0}


FAKE_SYSTEMCTL = textwrap.dedent("""\
    #!/usr/bin/env python3
    import os, pathlib, signal, subprocess, sys
    state = pathlib.Path(os.environ["FAKE_SYSTEMD_DIR"])
    with open(state / "calls", "a") as calls:
        calls.write(" ".join(sys.argv[1:]) + "\\n")
    cmd = sys.argv[1:]
    if cmd == ["cat", "ollama.service"]:
        if os.environ.get("FAKE_SYSTEMD_NO_UNIT"):
            sys.exit(1)
        print("[Service]\\nExecStart=/usr/local/bin/ollama serve")
    elif cmd == ["start", "ollama.service"]:
        proc = subprocess.Popen(["ollama", "serve"], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (state / "pid").write_text(str(proc.pid))
    elif cmd == ["stop", "ollama.service"]:
        os.killpg(int((state / "pid").read_text()), signal.SIGTERM)
    else:
        sys.exit(1)
""")


@pytest.fixture
def systemd(local: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    state = tmp_path / "systemd"
    state.mkdir()
    (state / "systemctl").write_text(FAKE_SYSTEMCTL)
    (state / "systemctl").chmod(0o755)
    monkeypatch.setenv("FAKE_SYSTEMD_DIR", str(state))
    monkeypatch.setenv("PATH", f"{state}{os.pathsep}{os.environ['PATH']}")
    yield state
    if (state / "pid").exists():
        kill_group(int((state / "pid").read_text()))


def wait_refused(url: str) -> bool:
    for _ in range(200):  # the unit stops asynchronously
        if refused(url):
            return True
        time.sleep(0.05)
    return False


def test_the_systemd_unit_is_used_when_installed(local: dict[str, Any], systemd: Path) -> None:
    code, started, err = invoke("ollama", "on", "--json")
    assert code == 0, err
    assert started["action"] == "started_unit" and started["pid"] is None
    assert (local["home"] / "ollama.unit").exists() and not (local["home"] / "ollama.pid").exists()
    assert httpx.get(f"{local['url']}/api/version").status_code == 200
    code, stopped, _ = invoke("ollama", "off", "--json")
    assert code == 0 and stopped["action"] == "stopped_unit"
    assert (systemd / "calls").read_text().splitlines() == [
        "cat ollama.service", "start ollama.service", "stop ollama.service"]
    assert not (local["home"] / "ollama.unit").exists() and wait_refused(local["url"])


def test_systemctl_without_the_unit_falls_back_to_serve(local: dict[str, Any], systemd: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SYSTEMD_NO_UNIT", "1")
    code, started, err = invoke("ollama", "on", "--json")
    assert code == 0, err
    assert started["action"] == "started" and (local["home"] / "ollama.pid").exists()
    assert (systemd / "calls").read_text().splitlines() == ["cat ollama.service"]
    assert invoke("ollama", "off")[0] == 0


# ------------------------------------------------------------------------- status


def test_status_lists_loaded_and_missing_models(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOllama(models=("qwen3:0.6b",)) as fake:
        monkeypatch.setenv("OLLAMA_HOST", fake.url)
        httpx.post(f"{fake.url}/api/generate", json={"model": "qwen3:0.6b", "options": {"num_ctx": 8192}})
        code, status, err = invoke("ollama", "status", "--json")
    assert code == 0
    (host,) = status["hosts"]
    assert host["missing"] == [{"model": "gemma3:270m", "fix": "ollama pull gemma3:270m"}]
    (loaded,) = host["loaded"]
    assert loaded["name"] == "qwen3:0.6b" and loaded["context_length"] == 8192
    assert set(loaded) >= {"name", "context_length", "size", "size_vram", "expires_at"}
    assert status["configured_models"] == ["gemma3:270m"] and status["managed"] is None
    assert "fix: ollama pull gemma3:270m" in err


def test_status_is_exit_1_when_a_host_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    down = refused_url()
    with FakeOllama() as fake:
        monkeypatch.setenv("OLLAMA_HOST", f"{fake.url},{down}")
        code, status, err = invoke("ollama", "status", "--json")
        assert code == 1
        up, gone = status["hosts"]
        assert up["reachable"] is True and up["missing"] == []
        assert gone["reachable"] is False and gone["host"] == down and gone["error"]
        assert gone["missing"] == [] and status["all_reachable"] is False
        assert "ollama-dist ollama on" in err
        table = runner.invoke(app, ["ollama", "status"])
        assert table.exit_code == 1 and "down" in table.stdout and "up 0.15.5" in table.stdout


def test_on_refuses_a_host_on_another_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "http://192.0.2.10:11434")
    code, _, err = invoke("ollama", "on")
    assert code == 2 and "on this machine" in err


@pytest.mark.parametrize(("available", "wanted", "missing"), [
    (["gemma3:270m"], ["gemma3:270m"], ()),
    (["gemma3:latest"], ["gemma3"], ()),
    (["gemma3:270m"], ["gemma3"], ("gemma3",)),
    ([], ["a", "a", "b:1"], ("a", "b:1")),
], ids=["exact", "bare-is-latest", "tag-differs", "none-pulled-deduped"])
def test_missing_models(available: list[str], wanted: list[str], missing: tuple[str, ...]) -> None:
    assert missing_models(available, wanted) == missing


def test_is_ollama_reads_the_command_line(tmp_path: Path, isolated_home: Path) -> None:
    proc = tmp_path / "proc"
    for pid, args in ((10, ["/usr/local/bin/ollama", "serve"]), (11, ["python3", "/x/fake_bin/ollama", "serve"]),
                      (12, ["python3", "-m", "ollama_dist", "serve"]), (13, ["/usr/local/bin/ollama", "run", "x"])):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in args) + b"\0")
    server = LocalServer(isolated_home, "127.0.0.1:11434", env={}, proc=proc)
    assert [server.is_ollama(pid) for pid in (10, 11, 12, 13, 14)] == [True, True, False, False, False]
