"""A protocol-faithful fake of the Anthropic API on 127.0.0.1, for tests and demos.

Real clients (the official ``anthropic`` SDK, curl) talk to it over a real socket.
It follows the wire shapes in PROTOCOLS.md section B and the 5.x model rules in the
box at its top. Run it by hand::

    python -m tests.servers.anthropic --port 8765 --key test-key
    ANTHROPIC_BASE_URL=http://127.0.0.1:8765 ANTHROPIC_API_KEY=test-key ollama-dist ...

Token counting is deterministic: a text of n characters is ``ceil(n / 4)`` tokens.
Input tokens count the system prompt and every message's text (text blocks, other
blocks as their JSON); ``count_tokens`` gives the same number ``/v1/messages`` reports.
Output tokens count the thinking text plus the answer text. When the system prompt
carries a ``cache_control`` block (or the body a top-level ``cache_control``) the
system prompt is the cached prefix: the first call reports it as
``cache_creation_input_tokens``, later calls with the same model and system prompt as
``cache_read_input_tokens``; ``input_tokens`` then excludes it, as the real API does.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import itertools
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from http.server import ThreadingHTTPServer
from typing import Any

from tests.servers.anthropic.batches import Batch, BatchRoutes
from tests.servers.anthropic.handler import Handler
from tests.servers.anthropic.instance import minimal_instance
from tests.servers.anthropic.tools import ToolPlan, planned_calls
from tests.servers.anthropic.wire import (
    DEFAULT_MODELS,
    KEPT_HEADERS,
    ApiError,
    RecordedRequest,
    Reply,
    check_params,
    input_tokens,
    model_major,
    now,
    rfc3339,
    sse,
    structured_output_tool,
    text_of,
    tokens,
)

Answer = Callable[[dict[str, Any]], str]

_THINKING = "The user wants an answer; I will give a short one."


@dataclass
class _Fault:
    status: int  # 0: a stall, then a normal answer
    retry_after: float | None = None
    message: str | None = None
    stall_s: float | None = None




class AnthropicServer(BatchRoutes):
    """Fake Anthropic API on 127.0.0.1 in a background thread.

    Use it as a context manager::

        with AnthropicServer(key="test-key") as server:
            client = anthropic.AsyncAnthropic(api_key="test-key", base_url=server.url)

    Constructor: ``AnthropicServer(key="test-key", *, host="127.0.0.1", port=0,
    models=DEFAULT_MODELS, latency=0.0, batch_polls=1, batch_seconds=None, batches=True)``.
    ``batch_polls``: how many retrievals of a batch answer ``in_progress`` before it
    ends; ``batch_seconds``, when given, replaces that count with an age in seconds.
    ``batches=False``: an Anthropic-compatible endpoint that serves the Messages API but
    has no ``/v1/messages/batches`` route (a proxy): every batches call is a 404
    ``not_found_error``, as any unknown route is (settable).

    Attributes: ``url`` (base URL without ``/v1``, as ``ANTHROPIC_BASE_URL`` wants),
    ``requests`` (a copy of every :class:`RecordedRequest` so far), ``latency``
    (seconds added before every answer; settable).

    Scripting:

    - ``answer(model, answers)``: a list of answer texts used in order (then the
      default generator again), or a callable ``(request body) -> str``. ``model``
      ``"*"`` applies to every model without its own script.
    - ``fail_next(status, *, times=1, retry_after=None, message=None)``: the next
      ``times`` API calls (any `/v1/` endpoint) answer this error instead, in the API's
      error shape. ``retry_after`` (seconds; a float keeps tests fast) becomes a
      ``retry-after`` header on any status; a 429 always has one (default 1) and
      the ``anthropic-ratelimit-*`` headers.
    - ``stall_next(seconds=None, *, times=1)``: the next calls wait that long (None:
      until the server closes) before answering normally.
    - ``calls(path)``: the recorded requests to one path, e.g. ``"/v1/messages"``.
    - ``use_tools(model, plan)``: ``plan(body)`` returns the tool calls the model makes
      (answered as ``tool_use`` blocks, ``stop_reason: "tool_use"``) or None for a text answer.

    Default answers: with ``output_config.format`` a minimal JSON instance of the
    schema; otherwise a sentence echoing the last user message. When the request offers
    Claude Code's ``StructuredOutput`` tool (``claude -p --json-schema``) and no tool
    result is in the conversation yet, the answer is a ``tool_use`` call of it with the
    answer text as its JSON input (a minimal instance of its schema when not JSON). 5.x models put a
    ``thinking`` block (with a signature) before the text unless thinking is disabled.
    """

    def __init__(
        self,
        key: str = "test-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = DEFAULT_MODELS,
        latency: float = 0.0,
        batch_polls: int = 1,
        batch_seconds: float | None = None,
        batches: bool = True,
    ) -> None:
        self._key = key
        self._host = host
        self._port = port
        self._models = frozenset(models)
        self.latency = latency
        self.batch_polls = batch_polls
        self.batch_seconds = batch_seconds
        self.batches = batches
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._faults: collections.deque[_Fault] = collections.deque()
        self._scripts: dict[str, collections.deque[str] | Answer] = {}
        self._tool_plans: dict[str, ToolPlan] = {}
        self._batches: dict[str, Batch] = {}
        self._cached_prefixes: set[tuple[str, str]] = set()
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"AnthropicServer(url={self.url if self._httpd else None!r})"

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> AnthropicServer:
        httpd = ThreadingHTTPServer((self._host, self._port), Handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-anthropic", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> AnthropicServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def calls(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    # -- scripting -----------------------------------------------------------------

    def answer(self, model: str, answers: Sequence[str] | Answer) -> None:
        with self._lock:
            self._scripts[model] = answers if callable(answers) else collections.deque(answers)

    def use_tools(self, model: str, plan: ToolPlan) -> None:
        with self._lock:
            self._tool_plans[model] = plan

    def fail_next(
        self, status: int, *, times: int = 1, retry_after: float | None = None, message: str | None = None
    ) -> None:
        with self._lock:
            self._faults.extend(_Fault(status, retry_after, message) for _ in range(times))

    def stall_next(self, seconds: float | None = None, *, times: int = 1) -> None:
        with self._lock:
            self._faults.extend(_Fault(0, stall_s=seconds) for _ in range(times))

    # -- request handling (called from handler threads) -----------------------------

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):020d}"

    def _record(self, method: str, path: str, headers: dict[str, str], body: Any) -> None:
        auth = "bearer" if headers.get("authorization", "").lower().startswith("bearer ") else None
        auth = auth or ("x-api-key" if "x-api-key" in headers else None)
        kept = {k: headers[k] for k in KEPT_HEADERS if k in headers}
        with self._lock:
            self._requests.append(RecordedRequest(method, path, kept, auth, body))

    def _authorized(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-api-key")
        bearer = headers.get("authorization", "")
        if bearer[:7].lower() == "bearer ":
            given = bearer[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), self._key.encode())

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = ...
        self._record(method, path, headers, None if body is ... else body)
        if self.latency:
            self._closing.wait(self.latency)
        with self._lock:
            fault = self._faults.popleft() if self._faults and path.startswith("/v1/") else None  # API routes only
        try:
            if fault is not None and fault.status == 0:
                self._closing.wait(fault.stall_s)
            elif fault is not None:
                raise ApiError(fault.status, fault.message)
            if "anthropic-version" not in headers:
                raise ApiError(400, "anthropic-version: header is required")
            if not self._authorized(headers):
                raise ApiError(401)
            if body is ...:
                raise ApiError(400, "The request body is not valid JSON.")
            return self._route(method, path, body)
        except ApiError as err:
            return self._error_reply(err, fault.retry_after if fault else None)

    def _route(self, method: str, path: str, body: Any) -> Reply:
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/v1/messages":
            message = self._message(body, tier="standard")
            if body.get("stream") is True:
                return Reply(200, headers=self._rid(), events=list(sse(message)))
            return self._json(200, message)
        if method == "POST" and path == "/v1/messages/count_tokens":
            check_params(body, self._models, need_max_tokens=False)
            return self._json(200, {"input_tokens": input_tokens(body)})
        if parts[:3] == ["v1", "messages", "batches"] and self.batches:
            return self._batch_route(method, parts[3:], body)
        raise ApiError(404, f"Not found: {method} {path}")

    def _rid(self) -> dict[str, str]:
        return {"request-id": self._next_id("req")}

    def _json(self, status: int, payload: Any) -> Reply:
        return Reply(status, json.dumps(payload).encode(), {**self._rid(), "content-type": "application/json"})

    def _error_reply(self, err: ApiError, retry_after: float | None) -> Reply:
        rid = self._next_id("req")
        payload = {"type": "error", "error": {"type": err.error_type, "message": err.message}, "request_id": rid}
        headers = {"request-id": rid, "content-type": "application/json"}
        if err.status == 429 and retry_after is None:
            retry_after = 1.0
        if retry_after is not None:
            headers["retry-after"] = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        if err.status == 429:
            reset = rfc3339(now() + timedelta(seconds=retry_after or 0)) or ""
            for kind, limit in (("requests", 50), ("tokens", 50000), ("input-tokens", 40000), ("output-tokens", 10000)):
                headers[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
                headers[f"anthropic-ratelimit-{kind}-remaining"] = "0"
                headers[f"anthropic-ratelimit-{kind}-reset"] = reset
        return Reply(err.status, json.dumps(payload).encode(), headers)

    # -- messages ------------------------------------------------------------------

    def _message(self, body: Any, *, tier: str) -> dict[str, Any]:
        check_params(body, self._models, need_max_tokens=True)
        model = body["model"]
        with self._lock:
            plan = self._tool_plans.get(model, self._tool_plans.get("*"))
        planned = planned_calls(plan, body)
        text = "" if planned is not None else self._answer_text(model, body)
        budget = int(body["max_tokens"])
        stop_reason, stop_sequence = "end_turn", None
        blocks: list[dict[str, Any]] = []
        used = 0
        thinking = body.get("thinking") or {}
        if (model_major(model) or 0) >= 5 and thinking.get("type") != "disabled":
            shown = _THINKING[: budget * 4]
            used = tokens(shown)
            signature = base64.b64encode(hashlib.sha256(shown.encode()).digest()).decode()
            blocks.append({"type": "thinking", "thinking": shown, "signature": signature})
            if len(shown) < len(_THINKING):
                stop_reason = "max_tokens"
        for stop in body.get("stop_sequences") or []:
            if stop and stop in text:
                text, stop_reason, stop_sequence = text[: text.index(stop)], "stop_sequence", stop
                break
        if stop_reason != "max_tokens" and planned is not None:
            for call in planned:
                blocks.append({"type": "tool_use", "id": self._next_id("toolu"), "name": call["name"],
                               "input": call["input"]})
                used += tokens(json.dumps(call["input"]))
            stop_reason = "tool_use"
        elif stop_reason != "max_tokens":
            room = (budget - used) * 4
            if len(text) > room:
                text, stop_reason, stop_sequence = text[:room], "max_tokens", None
            blocks.append({"type": "text", "text": text})
            used += tokens(text)
        tool = structured_output_tool(body) if planned is None else None
        if tool is not None and stop_reason != "max_tokens":
            # Claude Code's --json-schema: the answer is a call of its StructuredOutput tool
            try:
                value = json.loads(blocks[-1]["text"])
            except ValueError:
                value = minimal_instance(tool.get("input_schema") or {})
            used -= tokens(blocks[-1]["text"])
            blocks[-1] = {"type": "tool_use", "id": self._next_id("toolu"), "name": tool["name"], "input": value}
            used += tokens(json.dumps(value))
            stop_reason, stop_sequence = "tool_use", None
        total_in = input_tokens(body)
        created, read = self._cache(model, body)
        return {
            "id": self._next_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {
                "input_tokens": total_in - created - read,
                "output_tokens": used,
                "cache_creation_input_tokens": created,
                "cache_read_input_tokens": read,
                "cache_creation": {"ephemeral_5m_input_tokens": created, "ephemeral_1h_input_tokens": 0},
                "service_tier": tier,
            },
        }

    def _cache(self, model: str, body: dict[str, Any]) -> tuple[int, int]:
        system = body.get("system")
        marked = "cache_control" in body or (
            isinstance(system, list) and any(isinstance(b, dict) and "cache_control" in b for b in system)
        )
        if not marked or not system:
            return 0, 0
        prefix = text_of(system)
        with self._lock:
            seen = (model, prefix) in self._cached_prefixes
            self._cached_prefixes.add((model, prefix))
        return (0, tokens(prefix)) if seen else (tokens(prefix), 0)

    def _answer_text(self, model: str, body: dict[str, Any]) -> str:
        with self._lock:
            script = self._scripts.get(model, self._scripts.get("*"))
            if isinstance(script, collections.deque):
                text = script.popleft() if script else None
            else:
                text = None
        if callable(script):
            return str(script(body))
        if text is not None:
            return text
        fmt = (body.get("output_config") or {}).get("format")
        if fmt:
            return json.dumps(minimal_instance(fmt["schema"]))
        last = next((m for m in reversed(body["messages"]) if m.get("role") == "user"), None)
        asked = text_of(last["content"]) if last else ""
        return f"Fake answer from {model} to: {asked[:200]}"
