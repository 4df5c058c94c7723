"""`ollama-dist mcp`: a stdio MCP server, so Claude Code can hand deterministic work to the router.

Three tools: `route_tasks` (where each job would go, and why), `run_tasks` (run them;
the values that passed their checks, which checks those were, where each was answered,
totals with savings) and `router_status`
(`ollama_dist.report.status` for this session).
Tasks come inline (`task_yaml`: read as if it stood in the project directory) or as a
`path` to a task file or folder.

The project directory (`CLAUDE_PROJECT_DIR`, else the server's working directory)
bounds what a caller can reach: `path`, `root` and every task file a folder leads to
must resolve (symlinks followed) inside it, and the run's root, inside which inputs
and `output.write` targets must stay, is the project directory or `root` within it.

Stdout is the JSON-RPC channel and carries nothing else. While the server runs, fd 1
points at stderr and `sys.stdout` is `sys.stderr`, so a stray `print`, a Rich console,
a C library or a child process writes to stderr; the protocol goes out through a
private duplicate of the original stdout. (The SDK's own claim of fd 1 lets a
buffered `print` reach the wire when it releases fd 1 at exit, so this module passes
its own stream.) The low-level `mcp.server.Server` is used because only it serves
explicit streams through public API.

Runs are recorded under the session id the server was started with
(`CLAUDE_CODE_SESSION_ID`, set by Claude Code), so savings add up per Claude Code
session.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollama_dist import __version__
from ollama_dist.errors import InputError, OllamaDistError

if TYPE_CHECKING:
    from mcp import types

    from ollama_dist.config import Settings
    from ollama_dist.tasks.model import TaskSource

SERVER_NAME = "ollama-dist"
VALUE_CHARS = 8000  # larger values are left in their output file; Claude Code warns past 10,000 tokens

INSTRUCTIONS = (
    "Hand deterministic, checkable work (extraction, conversion, classification, formatting, "
    "boilerplate edits) to a local model: describe it as an ollama-dist task with an output "
    "format and, for JSON, a schema, so every answer is checked (format, schema, pattern; for "
    "extraction, that each value occurs in the input; with `output.agree: N`, that N local samples "
    "agree) and escalated to Claude when a check fails. A check proves what it checks, not that a "
    "value is right: each job's `checks` lists what was proved. Keep reasoning, design and review on "
    "Claude. route_tasks shows where jobs would "
    "go without running them; run_tasks runs them; router_status shows this session's savings."
)

_TASK_PROPERTIES: dict[str, Any] = {
    "task_yaml": {"type": "string", "description": (
        "An ollama-dist task file given inline (YAML: `name`, `prompt`, `inputs`, `output` with "
        "`format` and `schema`; or `tasks:` a list). It reads as if it stood in the project directory: "
        "relative paths in it (`inputs.files`, `output.write`) resolve there, and inputs and written "
        "outputs must stay inside the project directory.")},
    "path": {"type": "string", "description": (
        "A task file or a folder of them, relative to the project directory; it must resolve inside "
        "the project directory (no `..` out of it, no absolute path or symlink leading elsewhere).")},
    "root": {"type": "string", "description": (
        "The run's root for `path` (inputs and `output.write` stay inside it), relative to the project "
        "directory and inside it; default: the project directory.")},
}
_TASK_SCHEMA: dict[str, Any] = {"type": "object", "properties": _TASK_PROPERTIES, "additionalProperties": False}

TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "route_tasks": (
        "Decide, without calling any model, where each job of a task file would run: `local` "
        "(deterministic work, the local model) or `cloud` (reasoning, Claude), with the score, "
        "confidence, the rule that decided and the reasons. Give `task_yaml` or `path`.",
        _TASK_SCHEMA,
    ),
    "run_tasks": (
        "Run the jobs of a task file: local ones on the local model, the rest on Claude; every "
        "answer is checked against the task's output format, schema and pattern, extracted values "
        "against the input (`output.grounded`, on by default for extraction into JSON/YAML), and "
        "with `output.agree: N` across N local samples; a local answer that fails a check is escalated "
        "to Claude. Returns each job's status, its value (or output file) and `checks` (the checks it "
        "passed: format, schema, pattern, grounded, agree; a value can pass them and still be wrong), "
        "routed_to, actual_model, escalated, and the totals with cost, baseline and savings. Inside a "
        "Claude Code session, cloud work comes back as jobs with status `handed_back` (do them yourself "
        "from their `instructions` and `output_spec`). Give `task_yaml` or `path`. Example `task_yaml`: "
        "\"name: city\\nprompt: Extract the city. Reply with JSON only.\\ninputs: {text: Our office moved "
        "to Lisbon.}\\noutput: {format: json, schema: {type: object, required: [city], "
        "properties: {city: {type: string}}}}\"",
        _TASK_SCHEMA,
    ),
    "router_status": (
        "What the router did in this Claude Code session (or `since` a time): jobs, diversion and "
        "escalation rates with reasons, cost, baseline cost (all on Claude), savings, latency, the "
        "breaker's state, warnings, and per task the measured trust in its local answers (right, wrong, "
        "cut off at max_tokens, accuracy, advice) that the router acts on.",
        {"type": "object", "additionalProperties": False, "properties": {"since": {
            "type": "string", "description": "Instead of this session: what ran since 7d, 12h, 30m or a date."}}},
    ),
}


HAND_BACK_NOTE = ("jobs with status `handed_back` were not sent to the Anthropic API: do each one yourself "
                  "from its `instructions`, answering in its `output_spec` (and writing `output_spec.write` "
                  "when set)")

# ---------------------------------------------------------------------- tools


@dataclass(frozen=True)
class ServerState:
    """What the server was started with."""

    session: str
    project: Path
    env: Mapping[str, str]

    @classmethod
    def from_env(cls, env: Mapping[str, str], cwd: Path) -> ServerState:
        from ollama_dist.api import new_run_id, session_id

        session = session_id(None, env) or f"mcp-{new_run_id()}"
        project = Path(env["CLAUDE_PROJECT_DIR"]) if env.get("CLAUDE_PROJECT_DIR") else cwd
        return cls(session, project.resolve(), dict(env))

    def settings(self) -> Settings:
        from ollama_dist.config import load_settings

        return load_settings(self.project, self.env)

    def live_session(self, settings: Settings) -> str:
        """The session now: what the SessionStart hook last recorded (it follows /clear), else the start's."""
        from ollama_dist.integrations.claude_code.session import live_session

        return live_session(settings.home, self.project, self.session)


def _strings(args: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, str]:
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise InputError(f"unknown argument `{unknown[0]}`", hint="arguments: " + ", ".join(allowed))
    values: dict[str, str] = {}
    for key in allowed:
        value = args.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InputError(f"`{key}` must be a string")
        values[key] = value
    return values


INLINE_NAME = "<task_yaml>"  # where inline tasks read as standing, in the project directory


def inside_project(given: str, state: ServerState, argument: str) -> Path:
    """`given` (relative to the project, or absolute) resolved with symlinks followed; an
    InputError naming the MCP `argument` when it leads outside the project directory."""
    try:
        target = (state.project / given).resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a symlink loop
        raise InputError(f"argument `{argument}`: cannot use {given!r}: {exc}") from exc
    if not target.is_relative_to(state.project):
        raise InputError(f"argument `{argument}`: {given!r} leads to {target}, outside the project directory "
                         f"{state.project}", hint=f"`{argument}` must stay inside the project directory "
                         "(CLAUDE_PROJECT_DIR, else the server's working directory): no `..` out of it, "
                         "no absolute path or symlink leading elsewhere")
    return target


def _task_files(target: Path, given: str, state: ServerState) -> list[TaskSource]:
    """The task files `path` names, each checked to resolve inside the project."""
    from ollama_dist.tasks.loader import find_task_files

    found = find_task_files([target])
    for file in found:
        real = file.resolve() if isinstance(file, Path) else state.project
        if not real.is_relative_to(state.project):
            raise InputError(f"argument `path`: {file} (found under {given!r}) is a link to {real}, outside the "
                             f"project directory {state.project}",
                             hint="task files must be inside the project directory")
    return found


def task_paths(args: Mapping[str, Any], state: ServerState) -> tuple[list[TaskSource], Path]:
    """(task sources, root) for the tools' arguments, all inside the project directory."""
    from ollama_dist.tasks.model import InlineTasks

    given = _strings(args, tuple(_TASK_PROPERTIES))
    if ("task_yaml" in given) == ("path" in given):
        raise InputError("give exactly one of `task_yaml` (the task file's YAML) or `path`")
    if "path" in given:
        root = inside_project(given["root"], state, "root") if "root" in given else state.project
        return _task_files(inside_project(given["path"], state, "path"), given["path"], state), root
    if "root" in given:
        raise InputError("argument `root` goes with `path`; inline tasks run with the project directory as "
                         "their root")
    return [InlineTasks(given["task_yaml"], state.project / INLINE_NAME)], state.project


def route_tasks(args: Mapping[str, Any], state: ServerState) -> dict[str, Any]:
    from ollama_dist import api

    settings = state.settings()
    paths, root = task_paths(args, state)
    routed = api.route(paths, root=root, settings=settings)
    return {"jobs": [r.as_json() for r in routed]}


def handback_result(work: Mapping[str, Any], project: Path) -> dict[str, Any]:
    """A handed-back job's instructions and output_spec, its write path relative to the project."""
    from ollama_dist.run.handback import relative_to

    spec = dict(work["output_spec"])
    if spec.get("write"):
        spec["write"] = relative_to(spec["write"], project)
    return {"instructions": work["instructions"], "output_spec": spec,
            "estimated_input_tokens": work["estimated_input_tokens"]}


def _job_result(job: Mapping[str, Any], project: Path) -> dict[str, Any]:
    out = {key: job[key] for key in ("task", "job", "status", "routed_to", "actual_model", "escalated",
                                     "cache_hit", "reason", "output", "checks", "cost_usd", "baseline_cost_usd")}
    if job["status"] == "handed_back":
        out.update(handback_result(job["handed_back"], project))
    elif job["status"] == "ok":
        text = json.dumps(job["value"], default=str)
        if len(text) <= VALUE_CHARS:
            out["value"] = job["value"]
        else:
            out["value_omitted"] = f"{len(text)} characters; read it from `output`"
    return out


async def run_tasks(args: Mapping[str, Any], state: ServerState) -> dict[str, Any]:
    from ollama_dist import api
    from ollama_dist.run.handback import cloud_mode

    settings = state.settings()
    hand_back = cloud_mode(settings, state.env) == "caller"
    paths, root = task_paths(args, state)
    report = await api.run_async(paths, root=root, settings=settings, session=state.live_session(settings),
                                 env=state.env, hand_back=hand_back)
    data = report.as_json()
    return {"run_id": data["run_id"], "session": data["session"],
            "jobs": [_job_result(j, state.project) for j in data["jobs"]], "totals": data["totals"],
            "notes": data["notes"] + ([HAND_BACK_NOTE] if data["totals"]["handed_back"] else [])}


def router_status(args: Mapping[str, Any], state: ServerState) -> dict[str, Any]:
    from ollama_dist.report import status

    since = _strings(args, ("since",)).get("since")
    settings = state.settings()
    session = None if since else state.live_session(settings)
    return status.router_status(settings, session=session, since=since, env=state.env).as_json()


async def call(name: str, args: Mapping[str, Any], state: ServerState) -> dict[str, Any]:
    """One tool call; raises OllamaDistError (the caller makes it a tool error)."""
    if name == "route_tasks":
        return route_tasks(args, state)
    if name == "run_tasks":
        return await run_tasks(args, state)
    if name == "router_status":
        return router_status(args, state)
    raise InputError(f"unknown tool `{name}`", hint="tools: " + ", ".join(TOOLS))


# ---------------------------------------------------------------------- serving


@contextlib.contextmanager
def protocol_stdout() -> Iterator[int]:
    """Yield a private duplicate of stdout for the protocol; fd 1 and sys.stdout go to stderr meanwhile."""
    wire = os.dup(1)
    saved = sys.stdout
    try:
        os.dup2(2, 1)
        with contextlib.suppress(OSError, ValueError):
            saved.flush()  # what was printed before the server started goes to stderr too
        sys.stdout = sys.stderr
        yield wire
    finally:
        sys.stdout = saved
        with contextlib.suppress(OSError, ValueError):
            saved.flush()  # anything written to the old object lands on stderr, before fd 1 is restored
        os.dup2(wire, 1)
        os.close(wire)


def _result(data: dict[str, Any] | None, error: str | None) -> types.CallToolResult:
    from mcp import types

    if error is not None:
        return types.CallToolResult(content=[types.TextContent(type="text", text=error)], is_error=True)
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(data, indent=2, default=str))],
                                structured_content=data)


def handlers(state: ServerState) -> tuple[Callable[[Any, Any], Awaitable[types.ListToolsResult]],
                                          Callable[[Any, Any], Awaitable[types.CallToolResult]]]:
    from mcp import types

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=name, description=description, input_schema=schema,
                       annotations=types.ToolAnnotations(read_only_hint=name != "run_tasks",
                                                         idempotent_hint=name != "run_tasks",
                                                         destructive_hint=False if name == "run_tasks" else None,
                                                         open_world_hint=name == "run_tasks"))
            for name, (description, schema) in TOOLS.items()])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name not in TOOLS:  # a protocol error, not a tool result
            from mcp.shared.exceptions import MCPError

            raise MCPError(types.INVALID_PARAMS, f"unknown tool `{params.name}`; tools: {', '.join(TOOLS)}")
        try:
            return _result(await call(params.name, params.arguments or {}, state), None)
        except OllamaDistError as exc:
            return _result(None, str(exc))

    return list_tools, call_tool


async def serve_async(wire: int, state: ServerState) -> None:
    import io

    import anyio
    from mcp.server import Server
    from mcp.server.stdio import stdio_server

    list_tools, call_tool = handlers(state)
    server: Server[Any] = Server(SERVER_NAME, version=__version__, instructions=INSTRUCTIONS,
                                 on_list_tools=list_tools, on_call_tool=call_tool)
    out = io.TextIOWrapper(open(wire, "wb", closefd=False), encoding="utf-8", write_through=True)
    async with stdio_server(stdout=anyio.wrap_file(out)) as (read, write):
        await server.run(read, write, server.create_initialization_options())


def serve() -> None:
    """Serve MCP over stdio for Claude Code: route_tasks, run_tasks, router_status."""
    import logging

    with protocol_stdout() as wire:
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="ollama-dist mcp: %(message)s")
        logging.captureWarnings(True)
        import anyio

        state = ServerState.from_env(os.environ, Path.cwd())
        anyio.run(serve_async, wire, state)
