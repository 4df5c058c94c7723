"""`ollama-dist mcp`: a stdio MCP server, so Claude Code can hand deterministic work to the router.

Four tools (``tools``: descriptions, input and output schemas): `route_tasks` (where each
job would go, and why), `run_tasks` (run them; the values that passed their checks, which
checks those were, where each was answered, totals with savings; a `notifications/progress`
per finished job when the call carries a progress token), `report_answers` (the caller's
answers to jobs handed back to it) and
`router_status` (`ollama_dist.report.status` for this session). Tasks come inline
(`task_yaml`: read as if it stood in the project directory) or as a `path` to a task file
or folder. An unknown tool is a protocol error; any other failure is a tool error whose
text names the MCP argument, never a CLI flag (``wording``).

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

Runs are recorded under the live session: what the SessionStart hook last recorded for
the project (it follows /clear and resume), else the `CLAUDE_CODE_SESSION_ID` the server
was started with, so savings add up per Claude Code session.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollama_dist import __version__
from ollama_dist.errors import InputError, OllamaDistError
from ollama_dist.integrations.claude_code import answers
from ollama_dist.integrations.claude_code.progress import JobProgress, Progress
from ollama_dist.integrations.claude_code.tools import INSTRUCTIONS, TASK_PROPERTIES, TOOLS
from ollama_dist.integrations.claude_code.wording import for_caller, reworded

if TYPE_CHECKING:
    from mcp import types

    from ollama_dist.api import Refresh
    from ollama_dist.config import Settings
    from ollama_dist.tasks.model import Job, TaskSource

SERVER_NAME = "ollama-dist"
VALUE_CHARS = 8000  # larger values are left in their output file; Claude Code warns past 10,000 tokens

HAND_BACK_NOTE = ("jobs with status `handed_back` were not sent to the Anthropic API: do each one yourself "
                  "from its `instructions`, answering in its `output_spec` (and writing `output_spec.write` "
                  "when set); then give the answers to report_answers with this run_id, so a re-run does not "
                  "hand them back again")

# ---------------------------------------------------------------------- tools


@dataclass(frozen=True)
class ServerState:
    """What the server was started with."""

    session: str
    project: Path
    env: Mapping[str, str]
    # run_id -> job id -> (job, root): the jobs handed back in this server's recent runs (report_answers)
    handed: dict[str, dict[str, tuple[Job, Path]]] = field(default_factory=dict, compare=False)

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

    given = _strings(args, tuple(TASK_PROPERTIES))
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


def relative_to(path: str, base: Path) -> str:
    from ollama_dist.run import handback

    return handback.relative_to(path, base)


def handback_result(work: Mapping[str, Any], project: Path) -> dict[str, Any]:
    """A handed-back job's instructions and output_spec, its write path relative to the project."""
    spec = dict(work["output_spec"])
    if spec.get("write"):
        spec["write"] = relative_to(spec["write"], project)
    return {"instructions": work["instructions"], "output_spec": spec,
            "estimated_input_tokens": work["estimated_input_tokens"]}


def _job_result(job: Mapping[str, Any], project: Path) -> dict[str, Any]:
    out = {key: job[key] for key in ("task", "job", "status", "routed_to", "actual_model", "escalated",
                                     "escalation_reason", "cache_hit", "reason", "output", "checks",
                                     "cost_usd", "baseline_cost_usd")}
    if job["status"] == "handed_back":
        out.update(handback_result(job["handed_back"], project))
    elif job["status"] == "ok":
        text = json.dumps(job["value"], default=str)
        if len(text) <= VALUE_CHARS:
            out["value"] = job["value"]
        else:
            out["value_omitted"] = f"{len(text)} characters; read it from `output`"
    return out


async def run_tasks(args: Mapping[str, Any], state: ServerState, progress: Progress | None = None) -> dict[str, Any]:
    from ollama_dist import api
    from ollama_dist.run.handback import cloud_mode

    settings = state.settings()
    hand_back = cloud_mode(settings, state.env) == "caller"
    refresh = _refresh(args.get("refresh"))
    paths, root = task_paths({k: v for k, v in args.items() if k != "refresh"}, state)
    async with JobProgress(progress) as (on_start, on_event):
        report = await api.run_async(paths, root=root, settings=settings, session=state.live_session(settings),
                                     env=state.env, hand_back=hand_back, refresh=refresh, on_start=on_start,
                                     on_event=on_event)
    answers.remember(state.handed, report.run_id, [(o.job, root) for o in report.outcomes
                                                   if o.status == "handed_back"])
    data = report.as_json()
    return {"run_id": data["run_id"], "session": data["session"],
            "jobs": [_job_result(j, state.project) for j in data["jobs"]], "totals": data["totals"],
            "notes": data["notes"] + ([HAND_BACK_NOTE] if data["totals"]["handed_back"] else [])}


def _refresh(value: object) -> Refresh:
    """`refresh`: absent or false, nothing; true, every task; a list, the tasks it names."""
    from ollama_dist.api import Refresh

    if value is None or value is False:
        return Refresh()
    if value is True:
        return Refresh(every=True)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return Refresh(tasks=frozenset(value))
    raise InputError("`refresh` must be true, false or a list of task names")


def router_status(args: Mapping[str, Any], state: ServerState) -> dict[str, Any]:
    from ollama_dist.report import status

    since = _strings(args, ("since",)).get("since")
    settings = state.settings()
    session = None if since else state.live_session(settings)
    return status.router_status(settings, session=session, since=since, env=state.env).as_json()


async def call(name: str, args: Mapping[str, Any], state: ServerState,
               progress: Progress | None = None) -> dict[str, Any]:
    """One tool call; raises OllamaDistError (the caller makes it a tool error)."""
    if name == "route_tasks":
        return route_tasks(args, state)
    if name == "run_tasks":
        return await run_tasks(args, state, progress)
    if name == "report_answers":
        return answers.report_answers(args, state)
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
        return types.CallToolResult(content=[types.TextContent(type="text", text=for_caller(error))], is_error=True)
    data = reworded(data)
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(data, indent=2, default=str))],
                                structured_content=data)


def tool_list() -> list[types.Tool]:
    from mcp import types

    # `anthropic/alwaysLoad`: Claude Code (2.1.x) defers MCP tools behind its tool search unless the server
    # entry or the tool says alwaysLoad; a deferred tool's description (and its example) is not in the request
    return [types.Tool(name=name, description=t.description, input_schema=t.input_schema,
                       output_schema=t.output_schema, meta={"anthropic/alwaysLoad": True},
                       annotations=types.ToolAnnotations(read_only_hint=t.read_only, idempotent_hint=t.read_only,
                                                         destructive_hint=None if t.read_only else False,
                                                         open_world_hint=name == "run_tasks"))
            for name, t in TOOLS.items()]


def handlers(state: ServerState) -> tuple[Callable[[Any, Any], Awaitable[types.ListToolsResult]],
                                          Callable[[Any, Any], Awaitable[types.CallToolResult]]]:
    from mcp import types

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list())

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name not in TOOLS:  # a protocol error, not a tool result
            from mcp.shared.exceptions import MCPError

            raise MCPError(types.INVALID_PARAMS, f"unknown tool `{params.name}`; tools: {', '.join(TOOLS)}")
        # a no-op unless the call carried a progress token (Claude Code sends one with every call)
        progress = ctx.session.report_progress if ctx is not None else None
        try:
            return _result(await call(params.name, params.arguments or {}, state, progress), None)
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
    """Serve MCP over stdio for Claude Code: route_tasks, run_tasks, report_answers, router_status."""
    import logging

    with protocol_stdout() as wire:
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="ollama-dist mcp: %(message)s")
        logging.captureWarnings(True)
        import anyio

        state = ServerState.from_env(os.environ, Path.cwd())
        anyio.run(serve_async, wire, state)
