"""`ollama-dist mcp` driven over stdio by the SDK's own client, against the loopback servers.

The server runs as a real subprocess (`python -m ollama_dist.cli mcp`) behind a tiny
tee that copies every byte of its stdout to a file, so the test sees exactly what went
over the wire. A `sitecustomize` makes the process noisy on purpose (a print when our
module is imported, a print, a raw write to fd 1, a log record and a warning when the
Anthropic SDK is imported during a run): all of it must land on stderr.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ollama_dist.errors import InputError
from ollama_dist.integrations.claude_code import mcp_server
from tests.servers.anthropic import AnthropicServer
from tests.servers.ollama import FakeOllama

TEE = textwrap.dedent("""\
    import os, subprocess, sys
    log = open(sys.argv[1], "ab", buffering=0)
    child = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE)
    while chunk := os.read(child.stdout.fileno(), 65536):
        log.write(chunk)
        os.write(1, chunk)
    sys.exit(child.wait())
    """)

NOISE = textwrap.dedent("""\
    import logging, os, sys, warnings

    def _noise(event, args):
        if event != "import":
            return
        if args[0] == "ollama_dist.integrations.claude_code.mcp_server":
            print("NOISE: print while ollama_dist.integrations.claude_code.mcp_server is imported")
        if args[0] == "anthropic":
            print("NOISE: print during a tool call")
            os.write(1, b"NOISE: raw write to fd 1 during a tool call\\n")
            logging.getLogger("noisy.library").warning("NOISE: a log record")
            warnings.warn("NOISE: a warning")

    sys.addaudithook(_noise)
    """)

CITY = textwrap.dedent("""\
    name: city
    prompt: Extract the city from this sentence. Reply with JSON only.
    inputs: {text: "Our office moved to Lisbon last spring."}
    output:
      format: json
      schema: {type: object, required: [city], properties: {city: {type: string}}}
    """)


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama(models=("gemma3:270m",)) as server:
        yield server


@pytest.fixture
def claude() -> Iterator[AnthropicServer]:
    with AnthropicServer(key="test-key") as server:
        yield server


@pytest.fixture
def noisy(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(NOISE)
    return folder


class Wire:
    """A connected client session plus what the server wrote to stdout and stderr."""

    def __init__(self, session: Any, stdout: Path, stderr: Path) -> None:
        self.session = session
        self.stdout = stdout
        self.stderr = stderr

    async def call(self, name: str, args: dict[str, Any]) -> Any:
        return await self.session.call_tool(name, args)


@asynccontextmanager
async def connect(tmp_path: Path, env: dict[str, str], cwd: Path) -> AsyncIterator[Wire]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    stdout, stderr = tmp_path / "wire.out", tmp_path / "server.err"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", TEE, str(stdout), sys.executable, "-m", "ollama_dist.cli", "mcp"],
        env=env, cwd=str(cwd))
    with stderr.open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=60) as session:
                await session.initialize()
                yield Wire(session, stdout, stderr)


def server_env(isolated_home: Path, noisy: Path, **extra: str) -> dict[str, str]:
    return {"OLLAMA_DIST_HOME": str(isolated_home), "PYTHONPATH": f"{noisy}:{REPO}",
            "PYTHONWARNINGS": "default", **extra}


REPO = Path(__file__).resolve().parents[2]


def wire_messages(path: Path) -> list[dict[str, Any]]:
    lines = path.read_bytes().decode().splitlines()
    assert lines, "the server wrote nothing to stdout"
    messages = []
    for line in lines:
        message = json.loads(line)  # a stray line fails here
        assert message.get("jsonrpc") == "2.0", line
        messages.append(message)
    return messages


@pytest.fixture
def world(ollama: FakeOllama, claude: AnthropicServer, isolated_home: Path, noisy: Path) -> dict[str, Any]:
    # `mcp.cloud: api`: these tests are about the API lane (tests/run/test_handback.py: the caller lane)
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\ncloud: {max_retries: 0}\nmcp: {cloud: api}\n")
    env = server_env(isolated_home, noisy, OLLAMA_HOST=ollama.url, ANTHROPIC_BASE_URL=claude.url,
                     ANTHROPIC_API_KEY="test-key", CLAUDE_CODE_SESSION_ID="cc-session-42")
    return {"ollama": ollama, "claude": claude, "home": isolated_home, "env": env}


async def test_tools_over_stdio_and_nothing_but_protocol_on_stdout(world: dict[str, Any], tmp_path: Path) -> None:
    world["ollama"].script(['{"city": "Lisbon"}', "no json at all", '{"town": "Porto"}'])
    async with connect(tmp_path, world["env"], Path.cwd()) as wire:
        tools = await wire.session.list_tools()
        assert {t.name for t in tools.tools} == {"route_tasks", "run_tasks", "report_answers", "router_status"}
        for tool in tools.tools:
            assert tool.description and tool.input_schema["type"] == "object"

        routed = await wire.call("route_tasks", {"task_yaml": CITY})
        assert not routed.is_error, routed.content
        (job,) = routed.structured_content["jobs"]
        assert job["task"] == "city" and job["target"] == "local" and job["rule"]
        assert set(job) >= {"score", "confidence", "reasons"}
        assert json.loads(routed.content[0].text) == routed.structured_content
        assert world["ollama"].requests == []  # routing calls no model

        ran = await wire.call("run_tasks", {"task_yaml": CITY})
        assert not ran.is_error, ran.content
        (job,) = ran.structured_content["jobs"]
        assert job["status"] == "ok" and job["value"] == {"city": "Lisbon"}
        assert job["checks"] == ["format", "schema", "grounded"]  # what the value was proved to be, no more
        assert job["routed_to"] == "local" and job["actual_model"] == "gemma3:270m" and job["escalated"] is False
        assert json.loads(Path(job["output"]).read_text()) == {"city": "Lisbon"}
        assert ran.structured_content["session"] == "cc-session-42"
        totals = ran.structured_content["totals"]
        assert totals["jobs"] == 1 and totals["answered_local"] == 1 and totals["saved_usd"] > 0

        # two invalid local answers: the job climbs to Claude
        again = await wire.call("run_tasks", {"task_yaml": CITY.replace("Lisbon", "Porto")})
        (job,) = again.structured_content["jobs"]
        assert job["status"] == "ok" and job["escalated"] is True and job["actual_model"] == "claude-haiku-5-5"
        assert len(world["claude"].calls("/v1/messages")) == 1

        status = await wire.call("router_status", {})
        assert not status.is_error, status.content
        data = status.structured_content
        assert data["scope"]["kind"] == "session" and data["scope"]["session"] == "cc-session-42"
        assert data["jobs"] == 2 and data["escalated"] == 1 and data["local"] == 1 and data["cloud"] == 1
        assert data["savings_usd"] == pytest.approx(data["baseline_cost_usd"] - data["cost_usd"])
        assert data["trust"]["city"]["local_jobs"] == 2 and data["trust"]["city"]["right"] == 1
        since = await wire.call("router_status", {"since": "1d"})
        assert since.structured_content["scope"]["kind"] == "since" and since.structured_content["jobs"] == 2

    messages = wire_messages(wire.stdout)
    assert any(m.get("result", {}).get("structuredContent", {}).get("totals") for m in messages)
    err = wire.stderr.read_text()
    # the noise happened, and went to stderr
    for noise in ("print while ollama_dist.integrations.claude_code.mcp_server", "print during a tool call", "raw write to fd 1",
                  "a log record", "a warning"):
        assert f"NOISE: {noise}" in err, err
    db = sqlite3.connect(world["home"] / "ledger.db")
    sessions = {row[0] for row in db.execute("SELECT session FROM attempts")}
    assert sessions == {"cc-session-42"}


async def test_package_errors_are_tool_errors_and_the_server_lives_on(world: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    Path("t").mkdir()
    Path("t/city.yaml").write_text(CITY)
    async with connect(tmp_path, world["env"], Path.cwd()) as wire:
        bad = await wire.call("run_tasks", {"task_yaml": CITY.replace("prompt:", "promt:")})
        assert bad.is_error and "did you mean `prompt`" in bad.content[0].text
        missing = await wire.call("route_tasks", {"path": "no/such.yaml"})
        assert missing.is_error and "no such file or folder" in missing.content[0].text
        both = await wire.call("route_tasks", {"path": "t/city.yaml", "task_yaml": CITY})
        assert both.is_error and "exactly one" in both.content[0].text
        unknown = await wire.call("router_status", {"session": "other"})
        assert unknown.is_error and "unknown argument `session`" in unknown.content[0].text
        since = await wire.call("router_status", {"since": "yesterday-ish"})
        assert since.is_error and "argument `since`: cannot read 'yesterday-ish'" in since.content[0].text
        assert "--" not in since.content[0].text  # an MCP caller has arguments, not flags
        # relative paths resolve in the project folder (the server's cwd)
        good = await wire.call("route_tasks", {"path": "t/city.yaml"})
        assert not good.is_error and good.structured_content["jobs"][0]["task"] == "city"
    wire_messages(wire.stdout)
    assert world["ollama"].requests == [] and world["claude"].requests == []


def test_inline_tasks_read_as_standing_in_the_project(tmp_path: Path) -> None:
    from ollama_dist.tasks.model import InlineTasks

    state = mcp_server.ServerState("s", tmp_path.resolve(), {})
    (source,), root = mcp_server.task_paths({"task_yaml": CITY}, state)
    assert isinstance(source, InlineTasks) and source.text == CITY
    assert source.path.parent == root == tmp_path.resolve()
    assert not source.path.exists()  # nothing is written for an inline task
    with pytest.raises(InputError, match="exactly one"):
        mcp_server.task_paths({}, state)
    with pytest.raises(InputError, match="must be a string"):
        mcp_server.task_paths({"path": 3}, state)
    with pytest.raises(InputError, match="argument `root` goes with `path`; inline tasks run with the project directory"):
        mcp_server.task_paths({"task_yaml": CITY, "root": "."}, state)


EVIL = textwrap.dedent("""\
    name: evil
    prompt: Say hello as JSON.
    inputs: {text: "hello"}
    output: {format: json, write: "pwned.json"}
    """)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the project, holding a task file that writes next to itself."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "evil.yaml").write_text(EVIL)
    (folder / "secret.txt").write_text("the outside secret")
    return folder


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


async def test_path_and_root_cannot_leave_the_project(world: dict[str, Any], outside: Path, tmp_path: Path) -> None:
    project = Path.cwd()
    Path("t").mkdir()
    Path("t/city.yaml").write_text(CITY)
    Path("link.yaml").symlink_to(outside / "evil.yaml")
    Path("linked_dir").symlink_to(outside)
    Path("folder").mkdir()
    Path("folder/evil.yaml").symlink_to(outside / "evil.yaml")
    before = files_under(outside)
    refused = [  # (tool, arguments, the MCP argument the error must name)
        ("run_tasks", {"path": "../outside/evil.yaml", "root": "/"}, "root"),
        ("run_tasks", {"path": "../outside/evil.yaml"}, "path"),
        ("run_tasks", {"path": str(outside / "evil.yaml")}, "path"),
        ("route_tasks", {"path": "../outside"}, "path"),
        ("run_tasks", {"path": "t/city.yaml", "root": "../.."}, "root"),
        ("run_tasks", {"path": "t/city.yaml", "root": "/"}, "root"),
        ("run_tasks", {"path": "t/city.yaml", "root": str(outside)}, "root"),
        ("run_tasks", {"path": "link.yaml"}, "path"),
        ("run_tasks", {"path": "linked_dir/evil.yaml"}, "path"),
        ("run_tasks", {"path": "folder"}, "path"),
        ("run_tasks", {"path": "t/\x00.yaml"}, "path"),
    ]
    async with connect(tmp_path, world["env"], project) as wire:
        for tool, args, argument in refused:
            result = await wire.call(tool, args)
            text = result.content[0].text
            assert result.is_error, (args, text)
            assert f"argument `{argument}`" in text, (args, text)
            assert "outside the project directory" in text or "cannot use" in text, (args, text)
            assert "--root" not in text and "the outside secret" not in text, (args, text)
        # an inline task's write target resolves in the project and may not leave it
        out = await wire.call("run_tasks", {"task_yaml": EVIL.replace("pwned.json", "../outside/pwned.json")})
        assert out.is_error and "outside the run's root" in out.content[0].text
        # inside the project all is well: relative inputs and writes resolve in it
        world["ollama"].script(['{"city": "Lisbon"}'])
        Path("notes.txt").write_text("Our office moved to Lisbon last spring.")
        inline = CITY.replace('inputs: {text: "Our office moved to Lisbon last spring."}',
                              "inputs: {files: [notes.txt]}").replace("format: json", "format: json\n  write: out/{name}.json")
        ran = await wire.call("run_tasks", {"task_yaml": inline})
        assert not ran.is_error, ran.content[0].text
        assert json.loads((project / "out" / "city.json").read_text()) == {"city": "Lisbon"}
        assert "Lisbon last spring" in world["ollama"].requests[0]["messages"][-1]["content"]
        inside = await wire.call("route_tasks", {"path": str(project / "t" / "city.yaml"), "root": "t"})
        assert not inside.is_error, inside.content[0].text
    assert files_under(outside) == before  # nothing outside was written
    assert len(world["ollama"].requests) == 1 and world["claude"].requests == []


def test_session_is_the_claude_code_session_or_one_per_server(tmp_path: Path) -> None:
    given = mcp_server.ServerState.from_env({"CLAUDE_CODE_SESSION_ID": "abc"}, tmp_path)
    assert given.session == "abc" and given.project == tmp_path.resolve()
    own = mcp_server.ServerState.from_env({}, tmp_path)
    assert own.session.startswith("mcp-")
    project = mcp_server.ServerState.from_env({"CLAUDE_PROJECT_DIR": str(tmp_path / "p")}, tmp_path)
    assert project.project == (tmp_path / "p").resolve()


def test_protocol_stdout_sends_stray_output_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    with mcp_server.protocol_stdout() as wire:
        print("stray")
        os.write(1, b"raw\n")
        os.write(wire, b"protocol\n")
    print("after", flush=True)
    out, err = capfd.readouterr()
    assert out == "protocol\nafter\n"
    assert "stray" in err and "raw" in err
