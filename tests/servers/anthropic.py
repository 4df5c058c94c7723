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

import argparse
import base64
import collections
import hashlib
import hmac
import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[dict[str, Any]], str]
#: (request body) -> the tool calls to answer with, each {"name": ..., "input": {...}}; None: a text answer
ToolPlan = Callable[[dict[str, Any]], "list[dict[str, Any]] | None"]

#: Model ids the fake knows, besides the same ids with a ``-YYYYMMDD`` snapshot suffix.
DEFAULT_MODELS: tuple[str, ...] = (
    "claude-haiku-5-5",
    "claude-sonnet-5-5",
    "claude-opus-5-5",
    "claude-sonnet-5",
    "claude-opus-5",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-opus-4-5",
    "claude-sonnet-4-5",
)

ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}

_THINKING = "The user wants an answer; I will give a short one."
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_SNAPSHOT = re.compile(r"-\d{8}$")
_KEPT_HEADERS = (
    "anthropic-version",
    "anthropic-beta",
    "content-type",
    "accept",
    "x-stainless-retry-count",
    "idempotency-key",
    "user-agent",
)


def model_major(model: str) -> int | None:
    """The generation in a model id: 5 for claude-sonnet-5-5, 4 for claude-haiku-4-5, 3 for claude-3-7-sonnet."""
    m = re.match(r"^claude-(?:[a-z]+-)?(\d+)", model)
    return int(m.group(1)) if m else None


def tokens(text: str) -> int:
    """Deterministic token count: ceil(len / 4)."""
    return (len(text) + 3) // 4


def minimal_instance(schema: Any, root: Any = None) -> Any:
    """A small JSON value valid against `schema` (no pattern/multipleOf/uniqueItems support)."""
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return None
    schema = {**_hints(schema.get("description")), **schema}
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            if part:
                target = target[part.replace("~1", "/").replace("~0", "~")]
        return minimal_instance(target, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0], root)
    if schema.get("allOf"):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for each in schema["allOf"]:
            sub = _resolve(each, root)
            merged.setdefault("properties", {}).update(sub.get("properties", {}))
            merged["required"] = [*merged.get("required", []), *sub.get("required", [])]
            for k, v in sub.items():
                merged.setdefault(k, v)
        return minimal_instance(merged, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties", {})
        return {k: minimal_instance(props.get(k, {}), root) for k in schema.get("required", [])}
    if kind == "array":
        prefix = [minimal_instance(s, root) for s in schema.get("prefixItems", [])]
        extra = max(0, int(schema.get("minItems", 0)) - len(prefix))
        return prefix + [minimal_instance(schema.get("items", {}), root) for _ in range(extra)]
    if kind == "string":
        formats = {
            "date-time": "1970-01-01T00:00:00Z",
            "date": "1970-01-01",
            "time": "00:00:00Z",
            "email": "a@example.com",
            "uri": "https://example.com",
            "uuid": "00000000-0000-0000-0000-000000000000",
        }
        if schema.get("format") in formats:
            return formats[schema["format"]]
        return "x" * int(schema.get("minLength", 0))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema["exclusiveMinimum"] + 1 if "exclusiveMinimum" in schema else None)
        high = schema.get("maximum", schema["exclusiveMaximum"] - 1 if "exclusiveMaximum" in schema else None)
        value = low if low is not None else 0 if high is None or high >= 0 else high
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    return None


def _hints(description: Any) -> dict[str, Any]:
    """Constraints the SDK's transform_schema folds into a description ("... {minimum: 1}").

    A well-behaved model follows them, so the default answer does too.
    """
    found = re.search(r"\{([^{}]*)\}$", description) if isinstance(description, str) else None
    hints: dict[str, Any] = {}
    for pair in found.group(1).split(", ") if found else []:
        name, _, value = pair.partition(": ")
        try:
            hints[name] = json.loads(value)
        except ValueError:
            continue
    return hints


def _resolve(schema: Any, root: Any) -> dict[str, Any]:
    while isinstance(schema, dict) and "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            if part:
                target = target[part]
        schema = target
    return schema if isinstance(schema, dict) else {}


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            else:
                parts.append(json.dumps(block, sort_keys=True))
        return "".join(parts)
    return ""


class ApiError(Exception):
    """An error answer: HTTP status, error type, message."""

    def __init__(self, status: int, message: str | None = None, error_type: str | None = None) -> None:
        default_type, default_message = ERROR_TYPES.get(status, ("api_error", "Error"))
        self.status = status
        self.error_type = error_type or default_type
        self.message = message or default_message
        super().__init__(self.message)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received. Credentials are never stored, only which scheme carried them."""

    method: str
    path: str
    headers: dict[str, str]
    auth: str | None  # "bearer", "x-api-key" or None
    body: Any


@dataclass
class _Fault:
    status: int  # 0: a stall, then a normal answer
    retry_after: float | None = None
    message: str | None = None
    stall_s: float | None = None


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    events: list[bytes] | None = None  # an SSE stream instead of a body


@dataclass
class _Batch:
    id: str
    created: datetime
    started: float
    lines: list[dict[str, Any]]  # one result line per request, in request order
    polls: int = 0
    status: str = "in_progress"
    cancel_initiated: datetime | None = None
    ended: datetime | None = None


class AnthropicServer:
    """Fake Anthropic API on 127.0.0.1 in a background thread.

    Use it as a context manager::

        with AnthropicServer(key="test-key") as server:
            client = anthropic.AsyncAnthropic(api_key="test-key", base_url=server.url)

    Constructor: ``AnthropicServer(key="test-key", *, host="127.0.0.1", port=0,
    models=DEFAULT_MODELS, latency=0.0, batch_polls=1, batch_seconds=None)``.
    ``batch_polls``: how many retrievals of a batch answer ``in_progress`` before it
    ends; ``batch_seconds``, when given, replaces that count with an age in seconds.

    Attributes: ``url`` (base URL without ``/v1``, as ``ANTHROPIC_BASE_URL`` wants),
    ``requests`` (a copy of every :class:`RecordedRequest` so far), ``latency``
    (seconds added before every answer; settable).

    Scripting:

    - ``answer(model, answers)``: a list of answer texts used in order (then the
      default generator again), or a callable ``(request body) -> str``. ``model``
      ``"*"`` applies to every model without its own script.
    - ``fail_next(status, *, times=1, retry_after=None, message=None)``: the next
      ``times`` API calls (any endpoint) answer this error instead, in the API's
      error shape. ``retry_after`` (seconds; a float keeps tests fast) becomes a
      ``retry-after`` header on any status; a 429 always has one (default 1) and
      the ``anthropic-ratelimit-*`` headers.
    - ``stall_next(seconds=None, *, times=1)``: the next calls wait that long (None:
      until the server closes) before answering normally.
    - ``calls(path)``: the recorded requests to one path, e.g. ``"/v1/messages"``.
    - ``use_tools(model, plan)``: ``plan(request body)`` returns the tool calls the model
      makes (a list of ``{"name", "input"}``, answered as ``tool_use`` blocks with
      ``stop_reason: "tool_use"``), or None for the usual text answer. A call of a tool
      the request does not offer is a test bug: the server answers 400. This is what lets
      a client such as Claude Code be driven through its tools (``tool_results(body)``
      reads back what the client sent).

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
    ) -> None:
        self._key = key
        self._host = host
        self._port = port
        self._models = frozenset(models)
        self.latency = latency
        self.batch_polls = batch_polls
        self.batch_seconds = batch_seconds
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._faults: collections.deque[_Fault] = collections.deque()
        self._scripts: dict[str, collections.deque[str] | Answer] = {}
        self._tool_plans: dict[str, ToolPlan] = {}
        self._batches: dict[str, _Batch] = {}
        self._cached_prefixes: set[tuple[str, str]] = set()
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"AnthropicServer(url={self.url if self._httpd else None!r})"

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> AnthropicServer:
        httpd = ThreadingHTTPServer((self._host, self._port), _Handler)
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
        kept = {k: headers[k] for k in _KEPT_HEADERS if k in headers}
        with self._lock:
            self._requests.append(RecordedRequest(method, path, kept, auth, body))

    def _authorized(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-api-key")
        bearer = headers.get("authorization", "")
        if bearer[:7].lower() == "bearer ":
            given = bearer[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), self._key.encode())

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> _Reply:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = ...
        self._record(method, path, headers, None if body is ... else body)
        if self.latency:
            self._closing.wait(self.latency)
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
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

    def _route(self, method: str, path: str, body: Any) -> _Reply:
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/v1/messages":
            message = self._message(body, tier="standard")
            if body.get("stream") is True:
                return _Reply(200, headers=self._rid(), events=list(_sse(message)))
            return self._json(200, message)
        if method == "POST" and path == "/v1/messages/count_tokens":
            _check_params(body, self._models, need_max_tokens=False)
            return self._json(200, {"input_tokens": _input_tokens(body)})
        if parts[:3] == ["v1", "messages", "batches"]:
            return self._batch_route(method, parts[3:], body)
        raise ApiError(404, f"Not found: {method} {path}")

    def _rid(self) -> dict[str, str]:
        return {"request-id": self._next_id("req")}

    def _json(self, status: int, payload: Any) -> _Reply:
        return _Reply(status, json.dumps(payload).encode(), {**self._rid(), "content-type": "application/json"})

    def _error_reply(self, err: ApiError, retry_after: float | None) -> _Reply:
        rid = self._next_id("req")
        payload = {"type": "error", "error": {"type": err.error_type, "message": err.message}, "request_id": rid}
        headers = {"request-id": rid, "content-type": "application/json"}
        if err.status == 429 and retry_after is None:
            retry_after = 1.0
        if retry_after is not None:
            headers["retry-after"] = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        if err.status == 429:
            reset = _rfc3339(_now() + timedelta(seconds=retry_after or 0)) or ""
            for kind, limit in (("requests", 50), ("tokens", 50000), ("input-tokens", 40000), ("output-tokens", 10000)):
                headers[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
                headers[f"anthropic-ratelimit-{kind}-remaining"] = "0"
                headers[f"anthropic-ratelimit-{kind}-reset"] = reset
        return _Reply(err.status, json.dumps(payload).encode(), headers)

    # -- messages ------------------------------------------------------------------

    def _message(self, body: Any, *, tier: str) -> dict[str, Any]:
        _check_params(body, self._models, need_max_tokens=True)
        model = body["model"]
        planned = self._planned_tools(model, body)
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
        tool = _structured_output_tool(body) if planned is None else None
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
        total_in = _input_tokens(body)
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
        prefix = _text_of(system)
        with self._lock:
            seen = (model, prefix) in self._cached_prefixes
            self._cached_prefixes.add((model, prefix))
        return (0, tokens(prefix)) if seen else (tokens(prefix), 0)

    def _planned_tools(self, model: str, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        with self._lock:
            plan = self._tool_plans.get(model, self._tool_plans.get("*"))
        calls = plan(body) if plan is not None else None
        if not calls:
            return None
        offered = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        for call in calls:
            if call["name"] not in offered:
                raise ApiError(400, f"tools: the scripted call of {call['name']!r} is not among the tools offered")
        return list(calls)

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
        asked = _text_of(last["content"]) if last else ""
        return f"Fake answer from {model} to: {asked[:200]}"

    # -- batches -------------------------------------------------------------------

    def _batch_route(self, method: str, rest: list[str], body: Any) -> _Reply:
        if method == "POST" and not rest:
            return self._json(200, self._batch_view(self._create_batch(body)))
        with self._lock:
            batch = self._batches.get(rest[0]) if rest else None
        if batch is None:
            raise ApiError(404, "The requested message batch could not be found.")
        if method == "GET" and len(rest) == 1:
            self._advance(batch)
            return self._json(200, self._batch_view(batch))
        if method == "GET" and rest[1:] == ["results"]:
            if batch.status != "ended":
                raise ApiError(400, f"Batch {batch.id} has not ended; results are not available yet.")
            lines = "".join(json.dumps(line) + "\n" for line in reversed(batch.lines))
            return _Reply(200, lines.encode(), {**self._rid(), "content-type": "application/x-jsonl"})
        if method == "POST" and rest[1:] == ["cancel"]:
            with self._lock:
                if batch.status == "in_progress":
                    batch.status, batch.cancel_initiated = "canceling", _now()
            return self._json(200, self._batch_view(batch))
        if method == "DELETE" and len(rest) == 1:
            if batch.status != "ended":
                raise ApiError(400, "A batch must end before it can be deleted.")
            with self._lock:
                del self._batches[batch.id]
            return self._json(200, {"id": batch.id, "type": "message_batch_deleted"})
        raise ApiError(404, f"Not found: {method} /v1/messages/batches/{'/'.join(rest)}")

    def _create_batch(self, body: Any) -> _Batch:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise ApiError(400, "requests: field required (a non-empty list)")
        seen: set[str] = set()
        lines = []
        for i, item in enumerate(requests):
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id) or custom_id in seen:
                raise ApiError(400, f"requests.{i}.custom_id: must be unique and match {_CUSTOM_ID.pattern}")
            if not isinstance(item.get("params"), dict):
                raise ApiError(400, f"requests.{i}.params: field required")
            seen.add(custom_id)
            lines.append({"custom_id": custom_id, "result": self._batch_result(item["params"])})
        batch = _Batch(self._next_id("msgbatch"), _now(), time.monotonic(), lines)
        with self._lock:
            self._batches[batch.id] = batch
        return batch

    def _batch_result(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            if params.get("stream"):
                raise ApiError(400, "stream: batch requests cannot stream")
            if params.get("max_tokens") == 0:
                raise ApiError(400, "max_tokens: must be at least 1 in a batch")
            return {"type": "succeeded", "message": self._message(params, tier="batch")}
        except ApiError as err:
            error = {"type": err.error_type, "message": err.message}
            return {"type": "errored", "error": {"type": "error", "error": error, "request_id": None}}

    def _advance(self, batch: _Batch) -> None:
        """One retrieval: a canceling batch ends now, an in-progress one when its time has come."""
        with self._lock:
            batch.polls += 1
            if batch.status == "canceling":
                for line in batch.lines:
                    line["result"] = {"type": "canceled"}
                batch.status, batch.ended = "ended", _now()
            elif batch.status == "in_progress":
                if self.batch_seconds is not None:
                    done = time.monotonic() - batch.started >= self.batch_seconds
                else:
                    done = batch.polls > self.batch_polls
                if done:
                    batch.status, batch.ended = "ended", _now()

    def _batch_view(self, batch: _Batch) -> dict[str, Any]:
        with self._lock:
            counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
            if batch.status == "ended":
                for line in batch.lines:
                    counts[line["result"]["type"]] += 1
            else:
                counts["processing"] = len(batch.lines)
            ended = batch.status == "ended"
            return {
                "id": batch.id,
                "type": "message_batch",
                "processing_status": batch.status,
                "request_counts": counts,
                "created_at": _rfc3339(batch.created),
                "expires_at": _rfc3339(batch.created + timedelta(hours=24)),
                "ended_at": _rfc3339(batch.ended),
                "cancel_initiated_at": _rfc3339(batch.cancel_initiated),
                "archived_at": None,
                "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results" if ended else None,
            }


def _check_params(body: Any, models: frozenset[str], *, need_max_tokens: bool) -> None:
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    required = ("model", "max_tokens", "messages") if need_max_tokens else ("model", "messages")
    for name in required:
        if name not in body:
            raise ApiError(400, f"{name}: Field required")
    model = body["model"]
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model: Input should be a valid string")
    if need_max_tokens and (not isinstance(body["max_tokens"], int) or body["max_tokens"] < 0):
        raise ApiError(400, "max_tokens: Input should be a positive integer")
    messages = body["messages"]
    # Claude Code (claude-cli) also sends `role: "system"` messages (budget notes, skill listings)
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant", "system") and "content" in m for m in messages
    ):
        raise ApiError(400, "messages: each message needs a role of 'user', 'assistant' or 'system' and content")
    if model not in models and _SNAPSHOT.sub("", model) not in models:
        raise ApiError(404, f"model: {model}")
    if (model_major(model) or 0) >= 5:
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                raise ApiError(400, f"{name}: sampling parameters are not supported for {model}")
        if (body.get("thinking") or {}).get("type") == "enabled":
            raise ApiError(
                400, f"thinking.type.enabled is not supported for {model}; use thinking.type.adaptive"
            )
    output_config = body.get("output_config") or {}
    if not isinstance(output_config, dict):
        raise ApiError(400, "output_config: Input should be an object")
    effort = output_config.get("effort")
    if effort is not None and effort not in ("low", "medium", "high", "xhigh", "max"):
        raise ApiError(400, f"output_config.effort: unknown value {effort!r}")
    fmt = output_config.get("format")
    if fmt is not None and (
        not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict)
    ):
        raise ApiError(400, "output_config.format: expected {type: json_schema, schema: {...}}")


def _structured_output_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """Claude Code's `StructuredOutput` tool when offered and not yet answered in this conversation."""
    tools = body.get("tools") or []
    tool = next((t for t in tools if isinstance(t, dict) and t.get("name") == "StructuredOutput"), None)
    if tool is None:
        return None
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            return None
    return tool


def _input_tokens(body: dict[str, Any]) -> int:
    text = _text_of(body.get("system") or "")
    text += "".join(_text_of(m.get("content")) for m in body["messages"])
    if body.get("tools"):
        text += json.dumps(body["tools"], sort_keys=True)
    return tokens(text)


def _sse(message: dict[str, Any]) -> Iterator[bytes]:
    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
    yield event("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        if block["type"] == "thinking":
            empty: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif block["type"] == "tool_use":
            empty = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(json.dumps(block["input"]))]
        else:
            empty = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        yield event("content_block_start", {"type": "content_block_start", "index": index, "content_block": empty})
        if index == 0:
            yield event("ping", {"type": "ping"})
        for delta in deltas:
            yield event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield event("content_block_stop", {"type": "content_block_stop", "index": index})
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    yield event("message_delta", {"type": "message_delta", "delta": stop, "usage": usage})
    yield event("message_stop", {"type": "message_stop"})


def _pieces(text: str, size: int = 16) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-anthropic/1.0"
    verbose = False

    def _serve(self) -> None:
        fake: AnthropicServer = self.server.fake  # type: ignore[attr-defined]
        headers = {k.lower(): v for k, v in self.headers.items()}
        raw = self.rfile.read(int(headers.get("content-length") or 0))
        reply = fake.handle(self.command, self.path.split("?", 1)[0], headers, raw)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.events is None:
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            else:
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for chunk in reply.events:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout during a stall)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        if self.verbose:  # the request line only: never headers, so never a key
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Anthropic API for local tests and demos.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--key", default="test-key", help="the API key clients must send")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--batch-polls", type=int, default=1, help="retrievals a batch stays in_progress")
    parser.add_argument("-v", "--verbose", action="store_true", help="log request lines to stderr")
    args = parser.parse_args(argv)
    _Handler.verbose = args.verbose
    server = AnthropicServer(
        args.key, host=args.host, port=args.port, latency=args.latency, batch_polls=args.batch_polls
    )
    with server:
        print(f"fake Anthropic API at {server.url}  (ANTHROPIC_BASE_URL={server.url})", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `tool_result` blocks of a request's messages (what a client sent back for its tool calls)."""
    found = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            found.extend(b for b in content if isinstance(b, dict) and b.get("type") == "tool_result")
    return found
