"""Claude Code as a cloud backend: `claude -p --output-format json`, for a subscription log-in.

For users with a Claude Pro/Max log-in and no API key (and for cron on such a machine):
each cloud request runs `claude -p` once, the prompt on stdin, with the task's system
text replacing Claude Code's own system prompt (`--system-prompt`; it is about 26k
characters, seen with 2.1.197), no tools (`--tools ""`), one turn (`--max-turns 1`), no
saved session (`--no-session-persistence`), `--json-schema` for JSON tasks (the answer
arrives as `structured_output`, through Claude Code's StructuredOutput tool),
`--effort` for escalations and `--max-budget-usd` when `cloud.max_budget_usd` is set.

The documented JSON result is read: `result` (or `structured_output`), `is_error`,
`subtype`, `api_error_status`, `usage`, `modelUsage` (tokens per model, the answering
model) and `total_cost_usd` (Claude Code's own estimate: kept as the attempt's
`reported_cost_usd`; a subscription does not bill it). Failures become the package's
typed errors, so the escalation ladder and the ledger treat them as they treat the
API's: not logged in or a refused key -> AuthError; a usage limit or a 429 ->
RateLimited; 529 -> Overloaded; past the budget -> BudgetExceeded; no answer within the
task's timeout -> Timeout (the process is killed); `claude` missing -> Unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ollama_dist.backends.base import Completion, Lane, Request
from ollama_dist.errors import (
    AuthError,
    BackendError,
    BadRequest,
    BadResponse,
    BudgetExceeded,
    ModelMissing,
    Overloaded,
    RateLimited,
    Timeout,
    Unreachable,
)

EXECUTABLE = "claude"
DEFAULT_SYSTEM = "Do exactly what the user asks and reply with the answer only: no preamble, no tools."
_LOGIN_HINT = ("log in once with `claude` (then /login), or `claude setup-token`; or set ANTHROPIC_API_KEY "
               "and `cloud.backend: api`")
_AUTH = re.compile(r"not logged in|/login|invalid api key|oauth|authenticat|credential", re.I)
_LIMIT = re.compile(r"usage limit|session limit|weekly limit|limit reached|rate limit|hit your", re.I)
_RESET = re.compile(r"\|(\d{9,11})\b")


def available(env: Mapping[str, str] | None = None) -> bool:
    """Whether a `claude` executable is on the PATH."""
    path = (env or os.environ).get("PATH")
    return shutil.which(EXECUTABLE, path=path) is not None


def logged_in(env: Mapping[str, str] | None = None) -> bool | None:
    """Whether the `claude` on the PATH has a log-in (`claude auth status --json`: `loggedIn`, exit 1
    when not); None when it cannot say (an older CLI without `auth status`, or it hangs)."""
    exe = shutil.which(EXECUTABLE, path=(env or os.environ).get("PATH"))
    if exe is None:
        return False
    try:
        done = subprocess.run([exe, "auth", "status", "--json"], capture_output=True, text=True, timeout=10,
                              env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL)
        status = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if not isinstance(status, dict) or not isinstance(status.get("loggedIn"), bool):
        return None
    return bool(status["loggedIn"])


def command(request: Request, *, executable: str = EXECUTABLE, max_budget_usd: float | None = None) -> list[str]:
    """The `claude -p` argument list for one request (the prompt goes on stdin)."""
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    system = "\n\n".join(s for s in (request.system, system) if s) or DEFAULT_SYSTEM
    args = [executable, "-p", "--output-format", "json", "--model", request.model, "--system-prompt", system,
            "--tools", "", "--max-turns", "1", "--no-session-persistence"]
    if request.schema_ is not None:
        args += ["--json-schema", json.dumps(request.schema_)]
    if request.effort is not None:
        args += ["--effort", request.effort]
    if max_budget_usd is not None:
        args += ["--max-budget-usd", f"{max_budget_usd:g}"]
    return args


def prompt_text(request: Request) -> str:
    """The conversation as one prompt: `claude -p` takes a single user turn."""
    turns = [m for m in request.messages if m.role != "system"]
    if len(turns) == 1:
        return turns[0].content
    parts = []
    for message in turns:
        label = "Your earlier answer" if message.role == "assistant" else "Request"
        parts.append(f"{label}:\n{message.content}")
    return "\n\n".join(parts)


class ClaudeCodeBackend:
    """Cloud jobs through the `claude` CLI. `complete()` is the `Backend` method."""

    name = "claude-code"
    lane: Lane = "cloud"

    def __init__(self, *, executable: str = EXECUTABLE, max_budget_usd: float | None = None,
                 env: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.executable = executable
        self.max_budget_usd = max_budget_usd
        self._env = dict(os.environ if env is None else env)
        self._clock = clock

    def __repr__(self) -> str:
        return f"ClaudeCodeBackend(executable={self.executable!r}, max_budget_usd={self.max_budget_usd})"

    async def complete(self, request: Request) -> Completion:
        args = command(request, executable=self.executable, max_budget_usd=self.max_budget_usd)
        started = self._clock()
        code, out, err = await self._run(args, prompt_text(request), request.timeout_s)
        return parse_result(code, out, err, request=request, latency_s=self._clock() - started)

    async def _run(self, args: Sequence[str], stdin: str, timeout_s: float) -> tuple[int, str, str]:
        env = {k: v for k, v in self._env.items() if k != "CLAUDECODE"}  # a nested session is refused
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
        except OSError as exc:
            raise Unreachable(f"cannot run `{args[0]}`: {exc.strerror or exc}",
                              hint="install Claude Code (npm install -g @anthropic-ai/claude-code) or set "
                                   "`cloud.backend: api` with ANTHROPIC_API_KEY") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            model = args[args.index('--model') + 1]
            raise Timeout(f"`claude -p` gave no answer within {timeout_s:g} s (model {model})") \
                from exc
        return proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _result_object(out: str) -> dict[str, Any] | None:
    for line in reversed(out.strip().splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict) and data.get("type") == "result":
                return data
    return None


def parse_result(code: int, out: str, err: str, *, request: Request, latency_s: float) -> Completion:
    """A Completion from `claude -p --output-format json`, or the typed error it reports."""
    data = _result_object(out)
    if data is None:
        detail = (err.strip() or out.strip() or "no output")[-400:]
        raise classify(detail, None, code=code, model=request.model)
    if data.get("is_error") or data.get("subtype") != "success":
        raise error_from(data, code=code, model=request.model)
    structured = data.get("structured_output")
    text = json.dumps(structured) if request.schema_ is not None and structured is not None \
        else str(data.get("result") or "")
    model, tokens = _usage(data, request.model)
    cost = data.get("total_cost_usd")
    return Completion(
        text=text, model=model, backend=ClaudeCodeBackend.name, lane="cloud",
        input_tokens=tokens[0], output_tokens=tokens[1], cache_creation_tokens=tokens[2],
        cache_read_tokens=tokens[3], latency_s=latency_s, stop_reason=data.get("stop_reason"), host="claude-code",
        reported_cost_usd=float(cost) if isinstance(cost, (int, float)) else None)


def _usage(data: Mapping[str, Any], asked: str) -> tuple[str, tuple[int, int, int, int]]:
    """The answering model and (input, output, cache write, cache read) tokens over all models used."""
    per_model = data.get("modelUsage") or {}
    if isinstance(per_model, dict) and per_model:
        names = list(per_model)
        model = asked if asked in per_model else max(names, key=lambda n: per_model[n].get("outputTokens", 0))
        sums = [sum(int(per_model[n].get(k) or 0) for n in names)
                for k in ("inputTokens", "outputTokens", "cacheCreationInputTokens", "cacheReadInputTokens")]
        return model, (sums[0], sums[1], sums[2], sums[3])
    usage = data.get("usage") or {}
    return asked, tuple(int(usage.get(k) or 0) for k in (  # type: ignore[return-value]
        "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))


def error_from(data: Mapping[str, Any], *, code: int, model: str) -> BackendError:
    subtype = str(data.get("subtype") or "")
    if subtype == "error_max_budget_usd":
        return BudgetExceeded(f"`claude -p` stopped at the budget (cloud.max_budget_usd; "
                              f"Claude Code counted ${data.get('total_cost_usd', 0)})",
                              hint="raise cloud.max_budget_usd, or leave it unset")
    if subtype == "error_max_turns":
        return BadResponse(f"`claude -p` needed more than one turn for model {model}")
    detail = str(data.get("result") or "; ".join(map(str, data.get("errors") or [])) or subtype or "error")
    status = data.get("api_error_status")
    return classify(detail, status if isinstance(status, int) else None, code=code, model=model)


def classify(detail: str, status: int | None, *, code: int, model: str) -> BackendError:
    """The typed error for a message (and the API status) `claude -p` reported."""
    what = f"`claude -p` (exit {code}): {detail}"
    if status in (401, 403) or (status is None and _AUTH.search(detail)):
        return AuthError(what, hint=_LOGIN_HINT)
    if status == 429 or _LIMIT.search(detail):
        reset = _RESET.search(detail)
        return RateLimited(what, retry_after=max(0.0, int(reset.group(1)) - time.time()) if reset else None)
    if status == 529 or "overloaded" in detail.lower():
        return Overloaded(what)
    if status == 404:
        return ModelMissing(what, hint="check the Claude model id in the config")
    if status in (400, 413):
        return BadRequest(what)
    return BadResponse(what)
