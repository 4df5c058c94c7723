"""A protocol-faithful fake Ollama server on 127.0.0.1, for tests, benchmarks and demos.

Wire behaviour follows shared/PROTOCOLS.md A.1-A.8; deliberate simplifications are
listed at the end of this docstring.

Use:

    with FakeOllama() as srv:                     # or: async with FakeOllama() as srv
        srv.script(['{"city": "Lisbon"}'])       # answers, consumed in order
        ... talk to srv.url ...
        assert srv.requests[-1]["options"]["num_ctx"] == 8192

    python -m tests.servers.ollama --port 11434 [--real-model]     # by hand, for demos

`FakeOllama(models=("gemma3:270m",), *, port=0, num_parallel=1, max_queue=512,
latency_s=0.0, default_num_ctx=4096, context_length=32768, engine=None,
version="0.12.6")`:
    models          names served (a bare name means name:latest); others get 404.
    num_parallel    requests generated at once (OLLAMA_NUM_PARALLEL); others wait.
    max_queue       waiting requests beyond which the server answers 503 (OLLAMA_MAX_QUEUE).
    latency_s       fixed time each generation takes, inside its slot (benchmarks).
    default_num_ctx context when a request has no options.num_ctx (CPU-only default).
    context_length  trained context reported by /api/show for every model.
    engine          an `ollama_dist.backends.embedded.LocalModel`: answers (and token
                    counts) come from the real model unless a script says otherwise.

Attributes: `url` ("http://127.0.0.1:PORT"), `port`, `requests` (the JSON bodies of
generation requests, /api/chat, /api/generate and /v1/chat/completions, in arrival
order), `log` ((method, path) of every request), `max_active` (most generations seen
running at once), `loaded` ({model: num_ctx} as /api/ps reports it).

Methods:
    start() / stop()  also via `with` / `async with`. After stop() the port is closed,
                      so connecting is refused; open keep-alive connections are cut.
    script(answers, *, model=None)
                      answers for `model` (None: any model): a list of strings consumed
                      in order (then the default answer), or a callable(body) -> str.
    fault(kind, *, model=None, times=1, seconds=30.0)
                      the next `times` generation requests (None: all) fail as `kind`:
                      "stall"    sleep `seconds` inside the slot before answering (ends
                                 early when the client hangs up or the server stops);
                      "http_500" 500 {"error": "llama runner process has terminated..."};
                      "not_json" 200 with an HTML body;
                      "midstream_error" streaming: one chunk then {"error": ...} in a 200;
                                 with "stream": false the real server's 500 + {"error"};
                      "busy"     503 with the exact queue-full body;
                      "disconnect" close the connection without answering.
    add_model(name, *, context_length=32768, family="gemma3")
                      serve one more model.
    reset()           forget requests, log, scripts, faults and loaded models.

Helpers: `fenced(value)` (JSON in a ```json fence), `chatty(value)` (JSON with prose
around it), `refused_url()` (a URL whose port refuses connections),
`estimate_tokens(text)` (the fake tokenizer).

Token counts without an engine: ceil(len(text) / 4) per text plus 4 per chat message
(the template's turn markers). With an engine, its own tokenizer.

Default answers (no script): a JSON instance of the schema when `format` is a schema,
`{"answer": "ok"}` for format "json", else a short sentence.

Truncation (silent, as the real server): a prompt over num_ctx loses whole messages
from the front, keeping system messages and the latest one; if that still does not
fit it is cut to exactly num_ctx tokens (the first num_keep and the tail), so
prompt_eval_count reports what was kept.

Simplifications: the answer is only capped by num_predict
(context shift is assumed), and with an engine an unlimited num_predict means 512.
The queue applies to every generation (the real scheduler lets a request for a loaded
model skip it). size_vram is 0 (CPU-only). Load/unload requests do not queue.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal, Self

if TYPE_CHECKING:
    from ollama_dist.backends.embedded import LocalModel

FaultKind = Literal["stall", "http_500", "not_json", "midstream_error", "busy", "disconnect"]
Answers = Sequence[str] | Callable[[dict[str, Any]], str]

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
RUNNER_CRASH = "llama runner process has terminated: exit status 2"
MIDSTREAM_ERROR = "an error was encountered while running the model"
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
ENGINE_DEFAULT_PREDICT = 512
FOREVER = datetime(2318, 1, 1, tzinfo=UTC)
GENERATION_PATHS = ("/api/chat", "/api/generate", "/v1/chat/completions")


def estimate_tokens(text: str) -> int:
    """The fake tokenizer: one token per 4 characters, rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def fenced(value: Any) -> str:
    """`value` as JSON inside a ```json fence, as chatty models answer."""
    return f"```json\n{json.dumps(value, indent=2)}\n```"


def chatty(value: Any) -> str:
    """`value` as JSON with prose before and after it."""
    return f"Sure! Here is the JSON you asked for:\n{json.dumps(value)}\nLet me know if you need anything else."


def refused_url() -> str:
    """A loopback URL nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _timestamp(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond * 1000:09d}Z"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _keep_alive_seconds(value: Any) -> float:
    """keep_alive in seconds (negative: forever); ValueError as Go's time.ParseDuration."""
    if value is None:
        return 300.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise TypeError(f"json: cannot unmarshal {type(value).__name__} into Go value of type time.Duration")
    text, sign = value.strip(), 1.0
    if text.startswith("-"):
        text, sign = text[1:], -1.0
    if text == "0":
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f'time: missing unit in duration "{value}"')
    return sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _example(schema: Any) -> Any:
    """A small instance of a JSON schema (enough for the usual task schemas)."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _example(schema[key][0])
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _example(sub) for name, sub in props.items()}
    if kind == "array":
        return [_example(schema.get("items", {})) for _ in range(int(schema.get("minItems", 0)))]
    return {"string": "x" * int(schema.get("minLength", 1)), "integer": 0, "number": 0, "boolean": False}.get(
        kind, None
    )


@dataclass
class ModelSpec:
    """A model the fake server has "pulled"."""

    name: str
    family: str = "gemma3"
    context_length: int = 32768
    parameter_size: str = "268.10M"
    quantization: str = "Q4_K_M"
    size: int = 253_000_000
    capabilities: tuple[str, ...] = ("completion",)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization,
        }


@dataclass
class _Fault:
    kind: FaultKind
    model: str | None
    remaining: int | None
    seconds: float


@dataclass
class _Job:
    endpoint: Literal["chat", "generate", "openai"]
    model: str
    messages: list[dict[str, str]]
    options: dict[str, Any]
    fmt: Any
    stream: bool
    keep_alive: float
    body: dict[str, Any]
    include_usage: bool = False


@dataclass
class _Result:
    text: str
    prompt_tokens: int
    eval_count: int
    done_reason: str
    num_ctx: int
    load_ns: int
    started: float = field(default_factory=time.perf_counter)
    run_ns: int = 0  # measured model time (engine mode); 0: simulated durations


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a benchmark opens hundreds of connections at once
    fake: FakeOllama


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "FakeOllama"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.fake._track(self.connection, add=False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self.server.fake._dispatch(self, "GET")

    def do_HEAD(self) -> None:
        self.server.fake._dispatch(self, "HEAD")

    def do_POST(self) -> None:
        self.server.fake._dispatch(self, "POST")

    def do_DELETE(self) -> None:
        self.server.fake._dispatch(self, "DELETE")


class FakeOllama:
    """A fake Ollama server in a background thread. See the module docstring for the API."""

    def __init__(
        self,
        models: Sequence[str] = ("gemma3:270m",),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        num_parallel: int = 1,
        max_queue: int = 512,
        latency_s: float = 0.0,
        default_num_ctx: int = 4096,
        context_length: int = 32768,
        engine: LocalModel | None = None,
        version: str = "0.12.6",
    ) -> None:
        self.models = {self._full(n): ModelSpec(self._full(n), context_length=context_length) for n in models}
        self.num_parallel = num_parallel
        self.max_queue = max_queue
        self.latency_s = latency_s
        self.default_num_ctx = default_num_ctx
        self.engine = engine
        self.version = version
        self.requests: list[dict[str, Any]] = []
        self.log: list[tuple[str, str]] = []
        self.max_active = 0
        self._bind = (host, port)
        self._cv = threading.Condition()
        self._active = 0
        self._waiting = 0
        self._scripts: dict[str | None, deque[str] | Callable[[dict[str, Any]], str]] = {}
        self._faults: list[_Fault] = []
        self._loaded: dict[str, tuple[int, datetime]] = {}
        self._conns: set[socket.socket] = set()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        server = _Server(self._bind, _Handler)
        server.fake = self
        self._server = server
        self.port = server.server_address[1]
        self.url = f"http://{self._bind[0]}:{self.port}"
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-ollama", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        with self._cv:
            self._cv.notify_all()
        self._server.shutdown()
        self._server.server_close()
        with self._cv:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    # --- scripting -------------------------------------------------------------------

    def script(self, answers: Answers, *, model: str | None = None) -> None:
        """Answers for `model` (None: every model): strings consumed in order, or a callable(body)."""
        key = self._full(model) if model else None
        with self._cv:
            self._scripts[key] = answers if callable(answers) else deque(answers)

    def fault(
        self, kind: FaultKind, *, model: str | None = None, times: int | None = 1, seconds: float = 30.0
    ) -> None:
        """Make the next `times` generation requests (None: all) for `model` fail as `kind`."""
        with self._cv:
            self._faults.append(_Fault(kind, self._full(model) if model else None, times, seconds))

    def add_model(self, name: str, *, context_length: int = 32768, family: str = "gemma3") -> None:
        with self._cv:
            self.models[self._full(name)] = ModelSpec(self._full(name), family=family, context_length=context_length)

    def reset(self) -> None:
        with self._cv:
            self.requests.clear()
            self.log.clear()
            self._scripts.clear()
            self._faults.clear()
            self._loaded.clear()
            self.max_active = 0

    @property
    def loaded(self) -> dict[str, int]:
        with self._cv:
            return {name: ctx for name, (ctx, _) in self._live_models().items()}

    # --- plumbing --------------------------------------------------------------------

    @staticmethod
    def _full(name: str) -> str:
        return name if ":" in name else f"{name}:latest"

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._cv:
            (self._conns.add if add else self._conns.discard)(conn)

    def _dispatch(self, h: _Handler, method: str) -> None:
        path = h.path.split("?", 1)[0]
        with self._cv:
            self.log.append((method, path))
        routes: dict[tuple[str, str], Callable[[_Handler, str], None]] = {
            ("GET", "/"): self._root,
            ("HEAD", "/"): self._root,
            ("GET", "/api/version"): self._version,
            ("HEAD", "/api/version"): self._version,
            ("GET", "/api/tags"): self._tags,
            ("HEAD", "/api/tags"): self._tags,
            ("GET", "/api/ps"): self._ps,
            ("POST", "/api/show"): self._show,
            ("POST", "/api/chat"): self._generation,
            ("POST", "/api/generate"): self._generation,
            ("POST", "/v1/chat/completions"): self._generation,
        }
        route = routes.get((method, path))
        try:
            if route is None:
                self._read_body(h)
                _send(h, 404, b"404 page not found", "text/plain")
            else:
                route(h, path)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    @staticmethod
    def _read_body(h: _Handler) -> bytes:
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    def _json_body(self, h: _Handler) -> dict[str, Any]:
        raw = self._read_body(h)
        if not raw.strip():
            raise _HttpError(400, "missing request body")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _HttpError(400, f"invalid character in request body: {exc.msg}") from exc
        if not isinstance(body, dict):
            raise _HttpError(400, "json: cannot unmarshal array into Go value of type api.ChatRequest")
        return body

    def _live_models(self) -> dict[str, tuple[int, datetime]]:
        now = datetime.now(UTC)
        self._loaded = {n: v for n, v in self._loaded.items() if v[1] > now}
        return self._loaded

    # --- small endpoints ---------------------------------------------------------------

    def _root(self, h: _Handler, path: str) -> None:
        _send(h, 200, b"Ollama is running", "text/plain; charset=utf-8")

    def _version(self, h: _Handler, path: str) -> None:
        _send_json(h, 200, {"version": self.version})

    def _tags(self, h: _Handler, path: str) -> None:
        with self._cv:
            specs = list(self.models.values())
        modified = _timestamp(datetime(2026, 1, 1, tzinfo=UTC))
        models = [
            {
                "name": s.name,
                "model": s.name,
                "modified_at": modified,
                "size": s.size,
                "digest": s.digest,
                "details": s.details(),
                "capabilities": list(s.capabilities),
            }
            for s in specs
        ]
        _send_json(h, 200, {"models": models})

    def _ps(self, h: _Handler, path: str) -> None:
        with self._cv:
            live = sorted(self._live_models().items(), key=lambda item: item[1][1], reverse=True)
            specs = dict(self.models)
        models = []
        for name, (num_ctx, expires) in live:
            spec = specs.get(name, ModelSpec(name))
            models.append(
                {
                    "name": name,
                    "model": name,
                    "size": spec.size + num_ctx * 2048,
                    "digest": spec.digest,
                    "details": spec.details(),
                    "expires_at": _timestamp(expires),
                    "size_vram": 0,
                    "context_length": num_ctx,
                }
            )
        _send_json(h, 200, {"models": models})

    def _show(self, h: _Handler, path: str) -> None:
        try:
            body = self._json_body(h)
            name = body.get("model") or body.get("name")
            if not name:
                raise _HttpError(400, "model is required")
            spec = self.models.get(self._full(str(name)))
            if spec is None:
                raise _HttpError(404, f"model '{name}' not found")
        except _HttpError as exc:
            _send_json(h, exc.status, {"error": exc.message})
            return
        _send_json(
            h,
            200,
            {
                "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {spec.name}\n",
                "parameters": 'stop "<end_of_turn>"',
                "template": "{{- range .Messages }}<start_of_turn>{{ .Role }}\n{{ .Content }}<end_of_turn>\n{{ end }}",
                "details": spec.details(),
                "model_info": {
                    "general.architecture": spec.family,
                    "general.parameter_count": 268_098_176,
                    f"{spec.family}.context_length": spec.context_length,
                    f"{spec.family}.embedding_length": 640,
                },
                "capabilities": list(spec.capabilities),
                "modified_at": _timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
            },
        )

    # --- generation ------------------------------------------------------------------

    def _generation(self, h: _Handler, path: str) -> None:
        endpoint: Literal["chat", "generate", "openai"] = (
            "chat" if path == "/api/chat" else "generate" if path == "/api/generate" else "openai"
        )
        try:
            body = self._json_body(h)
            with self._cv:
                self.requests.append(body)
            job = self._job(endpoint, body)
        except _HttpError as exc:
            self._fail(h, endpoint, exc.status, exc.message)
            return
        if not job.messages and endpoint != "openai":
            self._load_or_unload(h, job)
            return
        fault = self._take_fault(job.model)
        if fault is not None and fault.kind == "busy":
            self._fail(h, endpoint, 503, BUSY_MESSAGE)
            return
        if not self._admit():
            self._fail(h, endpoint, 503, BUSY_MESSAGE)
            return
        try:
            if fault is not None and self._apply_fault(h, job, fault):
                return
            if self.latency_s > 0:
                self._stopping.wait(self.latency_s)
            result = self._generate(job)
            self._mark_loaded(job.model, result.num_ctx, job.keep_alive)
            self._respond(h, job, result)
        except _HttpError as exc:
            self._fail(h, endpoint, exc.status, exc.message)
        finally:
            self._release()

    def _job(self, endpoint: Literal["chat", "generate", "openai"], body: dict[str, Any]) -> _Job:
        model = body.get("model")
        if not model:
            raise _HttpError(400, "model is required")
        if self._full(str(model)) not in self.models:
            raise _HttpError(404, f"model '{model}' not found")
        options = dict(body.get("options") or {})
        try:
            keep_alive = _keep_alive_seconds(body.get("keep_alive"))
        except (ValueError, TypeError) as exc:
            raise _HttpError(400, str(exc)) from exc
        if endpoint == "openai":
            return self._openai_job(str(model), body, keep_alive)
        if endpoint == "chat":
            messages = [
                {"role": str(m.get("role", "user")), "content": str(m.get("content") or "")}
                for m in body.get("messages") or []
                if isinstance(m, dict)
            ]
        else:
            messages = [{"role": "system", "content": str(body["system"])}] if body.get("system") else []
            if body.get("prompt"):
                messages.append({"role": "user", "content": str(body["prompt"])})
        stream = body.get("stream") is not False  # absent means streaming
        return _Job(endpoint, str(model), messages, options, body.get("format"), stream, keep_alive, body)

    def _openai_job(self, model: str, body: dict[str, Any], keep_alive: float) -> _Job:
        messages = []
        for m in body.get("messages") or []:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):  # content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            messages.append({"role": str(m.get("role", "user")), "content": str(content or "")})
        options: dict[str, Any] = {}
        if body.get("max_tokens") is not None:
            options["num_predict"] = body["max_tokens"]
        if body.get("temperature") is not None:
            options["temperature"] = body["temperature"]
        if body.get("seed") is not None:
            options["seed"] = body["seed"]
        fmt: Any = None
        rf = body.get("response_format")
        if isinstance(rf, dict) and rf.get("type") == "json_object":
            fmt = "json"
        elif isinstance(rf, dict) and rf.get("type") == "json_schema":
            fmt = (rf.get("json_schema") or {}).get("schema") or "json"
        stream = body.get("stream") is True  # a plain bool here: absent means false
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return _Job("openai", model, messages, options, fmt, stream, keep_alive, body, usage)

    def _load_or_unload(self, h: _Handler, job: _Job) -> None:
        name = self._full(job.model)
        if job.keep_alive == 0:
            with self._cv:
                self._loaded.pop(name, None)
            reason = "unload"
        else:
            self._mark_loaded(job.model, int(job.options.get("num_ctx") or self.default_num_ctx), job.keep_alive)
            reason = "load"
        chunk = self._chunk(job, "", done=True)
        chunk["done_reason"] = reason
        _send_json(h, 200, chunk)

    def _take_fault(self, model: str) -> _Fault | None:
        name = self._full(model)
        with self._cv:
            for fault in self._faults:
                if fault.model in (None, name):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _admit(self) -> bool:
        with self._cv:
            if self._active >= self.num_parallel:
                if self._waiting >= self.max_queue:
                    return False
                self._waiting += 1
                while self._active >= self.num_parallel and not self._stopping.is_set():
                    self._cv.wait(0.1)
                self._waiting -= 1
            self._active += 1
            self.max_active = max(self.max_active, self._active)
            return True

    def _release(self) -> None:
        with self._cv:
            self._active -= 1
            self._cv.notify()

    def _apply_fault(self, h: _Handler, job: _Job, fault: _Fault) -> bool:
        """Act out `fault`; True when the request is finished."""
        if fault.kind == "stall":
            deadline = time.monotonic() + fault.seconds
            while time.monotonic() < deadline:
                if self._stopping.wait(0.05) or _client_gone(h.connection):
                    h.close_connection = True
                    return True
            return False
        if fault.kind == "http_500":
            self._fail(h, job.endpoint, 500, RUNNER_CRASH)
        elif fault.kind == "not_json":
            _send(h, 200, b"<html><body><h1>It works!</h1></body></html>", "text/html; charset=utf-8")
        elif fault.kind == "disconnect":
            h.close_connection = True
        elif fault.kind == "midstream_error":
            if not job.stream or job.endpoint == "openai":
                self._fail(h, job.endpoint, 500, MIDSTREAM_ERROR)
            else:
                _start_stream(h, "application/x-ndjson")
                _write_chunk(h, json.dumps(self._chunk(job, "Yes")).encode() + b"\n")
                _write_chunk(h, json.dumps({"error": MIDSTREAM_ERROR}).encode() + b"\n")
                _end_stream(h)
                h.close_connection = True
        return True

    def _fail(self, h: _Handler, endpoint: str, status: int, message: str) -> None:
        if endpoint == "openai":
            kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
            body: dict[str, Any] = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        else:
            body = {"error": message}
        _send_json(h, status, body)

    def _mark_loaded(self, model: str, num_ctx: int, keep_alive: float) -> None:
        name = self._full(model)
        with self._cv:
            if keep_alive == 0:
                self._loaded.pop(name, None)
            elif keep_alive < 0:
                self._loaded[name] = (num_ctx, FOREVER)
            else:
                self._loaded[name] = (num_ctx, datetime.now(UTC) + timedelta(seconds=keep_alive))

    # --- the "model" -------------------------------------------------------------------

    def _count(self, text: str) -> int:
        return self.engine.count_tokens(text) if self.engine is not None else estimate_tokens(text)

    def _fit(self, messages: list[dict[str, str]], num_ctx: int, num_keep: int) -> tuple[list[dict[str, str]], int]:
        """What the real server does with a prompt over num_ctx (A.8): drop whole messages
        from the front, keeping system messages and the latest; then clip tokens."""
        costs = [self._count(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages]
        total = 0
        for start in range(len(messages)):
            keep = [i for i in range(len(messages)) if i >= start or messages[i]["role"] == "system"]
            total = sum(costs[i] for i in keep)
            if total <= num_ctx:
                return [messages[i] for i in keep], total
        kept = [m for i, m in enumerate(messages) if m["role"] == "system" or i == len(messages) - 1]
        if self.engine is not None:
            last = kept[-1]
            room = num_ctx - (total - costs[-1]) - MESSAGE_OVERHEAD_TOKENS
            tail = max(room - num_keep, 1)
            kept[-1] = {"role": last["role"], "content": self.engine.clip_tokens(last["content"], num_keep, tail)}
        return kept, num_ctx

    def _answer(self, job: _Job, name: str) -> str | None:
        with self._cv:
            script = self._scripts.get(name, self._scripts.get(None))
            if isinstance(script, deque) and script:
                return script.popleft()
        if callable(script):
            return script(job.body)
        return None

    def _generate(self, job: _Job) -> _Result:
        started = time.perf_counter()
        name = self._full(job.model)
        with self._cv:
            was_loaded = name in self._live_models()
        num_ctx = int(job.options.get("num_ctx") or self.default_num_ctx)
        num_predict = int(job.options.get("num_predict", -1))
        messages, prompt_tokens = self._fit(job.messages, num_ctx, int(job.options.get("num_keep", 4)))
        text = self._answer(job, name)
        if text is None and self.engine is not None:
            return self._engine_generate(job, messages, num_ctx, num_predict, was_loaded, started)
        if text is None:
            if isinstance(job.fmt, dict):
                text = json.dumps(_example(job.fmt))
            elif job.fmt == "json":
                text = json.dumps({"answer": "ok"})
            else:
                text = "This is a fake answer from the test server."
        eval_count, reason = estimate_tokens(text), "stop"
        if 0 < num_predict < eval_count:
            text, eval_count, reason = text[: num_predict * CHARS_PER_TOKEN], num_predict, "length"
        load_ns = 0 if was_loaded else 250_000_000
        return _Result(text, prompt_tokens, eval_count, reason, num_ctx, load_ns, started)

    def _engine_generate(
        self,
        job: _Job,
        messages: list[dict[str, str]],
        num_ctx: int,
        num_predict: int,
        was_loaded: bool,
        started: float,
    ) -> _Result:
        assert self.engine is not None
        max_tokens = num_predict if num_predict > 0 else ENGINE_DEFAULT_PREDICT
        from ollama_dist.errors import OllamaDistError

        run_started = time.perf_counter()
        try:
            out = self.engine.chat(
                messages,
                max_tokens=max_tokens,
                temperature=float(job.options.get("temperature", 0.8)),
                schema=job.fmt if isinstance(job.fmt, dict) else None,
                json_mode=job.fmt == "json",
                n_ctx=num_ctx + max_tokens + 64,
                seed=int(job.options["seed"]) if job.options.get("seed") is not None else None,
            )
        except OllamaDistError as exc:
            raise _HttpError(500, exc.message) from exc
        reason = "length" if out.finish_reason == "length" else "stop"
        load_ns = 0 if was_loaded else int(self.engine.load_seconds * 1e9)
        run_ns = int((time.perf_counter() - run_started) * 1e9)
        return _Result(out.text, out.prompt_tokens, out.completion_tokens, reason, num_ctx, load_ns, started, run_ns)

    # --- responses -------------------------------------------------------------------

    def _chunk(self, job: _Job, piece: str, *, done: bool = False) -> dict[str, Any]:
        chunk: dict[str, Any] = {"model": job.model, "created_at": _timestamp()}
        if job.endpoint == "generate":
            chunk["response"] = piece
        else:
            chunk["message"] = {"role": "assistant", "content": piece}
        chunk["done"] = done
        return chunk

    def _final(self, job: _Job, result: _Result, text: str) -> dict[str, Any]:
        final = self._chunk(job, text, done=True)
        final["done_reason"] = result.done_reason
        if job.endpoint == "generate" and job.body.get("raw") is not True:
            final["context"] = list(range(1, min(result.prompt_tokens + result.eval_count, 64) + 1))
        if result.run_ns:  # split the measured time: prompt tokens run ~10x faster than generated ones
            weight = result.prompt_tokens + 10 * result.eval_count or 1
            prompt_ns = result.run_ns * result.prompt_tokens // weight
            eval_ns = result.run_ns - prompt_ns
        else:
            prompt_ns = result.prompt_tokens * 100_000
            eval_ns = result.eval_count * 10_000_000
        total_ns = max(int((time.perf_counter() - result.started) * 1e9), result.load_ns + prompt_ns + eval_ns)
        metrics = {
            "total_duration": total_ns,
            "load_duration": result.load_ns,
            "prompt_eval_count": result.prompt_tokens,
            "prompt_eval_duration": prompt_ns,
            "eval_count": result.eval_count,
            "eval_duration": eval_ns,
        }
        final.update({k: v for k, v in metrics.items() if v})  # omitempty
        return final

    def _respond(self, h: _Handler, job: _Job, result: _Result) -> None:
        if job.endpoint == "openai":
            self._respond_openai(h, job, result)
        elif not job.stream:
            _send_json(h, 200, self._final(job, result, result.text))
        else:
            _start_stream(h, "application/x-ndjson")
            for piece in _pieces(result.text):
                _write_chunk(h, json.dumps(self._chunk(job, piece)).encode() + b"\n")
            _write_chunk(h, json.dumps(self._final(job, result, "")).encode() + b"\n")
            _end_stream(h)

    def _respond_openai(self, h: _Handler, job: _Job, result: _Result) -> None:
        ident, created = f"chatcmpl-{next(self._ids)}", int(time.time())
        usage = {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.eval_count,
            "total_tokens": result.prompt_tokens + result.eval_count,
        }
        head = {"id": ident, "created": created, "model": job.model, "system_fingerprint": "fp_ollama"}
        if not job.stream:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.done_reason,
            }
            _send_json(h, 200, {**head, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        _start_stream(h, "text/event-stream")

        def event(payload: dict[str, Any]) -> None:
            _write_chunk(h, b"data: " + json.dumps({**head, "object": "chat.completion.chunk", **payload}).encode() + b"\n\n")

        for piece in _pieces(result.text):
            delta = {"role": "assistant", "content": piece}
            event({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        event({"choices": [{"index": 0, "delta": {}, "finish_reason": result.done_reason}]})
        if job.include_usage:
            event({"choices": [], "usage": usage})
        _write_chunk(h, b"data: [DONE]\n\n")
        _end_stream(h)


# --- HTTP helpers ------------------------------------------------------------------------


def _pieces(text: str) -> list[str]:
    words = re.findall(r"\s*\S+\s*|\s+", text) or [text]
    size = max(1, math.ceil(len(words) / 16))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def _send(h: _Handler, status: int, body: bytes, content_type: str) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def _send_json(h: _Handler, status: int, obj: Any) -> None:
    _send(h, status, json.dumps(obj).encode(), "application/json; charset=utf-8")


def _start_stream(h: _Handler, content_type: str) -> None:
    h.send_response(200)
    h.send_header("Content-Type", content_type)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()


def _write_chunk(h: _Handler, data: bytes) -> None:
    h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    h.wfile.flush()


def _end_stream(h: _Handler) -> None:
    h.wfile.write(b"0\r\n\r\n")
    h.wfile.flush()


def _client_gone(conn: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake Ollama server (tests and demos).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--model", action="append", dest="models", help="a model to serve (repeatable)")
    parser.add_argument("--real-model", action="store_true", help="answer with Gemma 3 270M via llama.cpp")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each generation takes")
    parser.add_argument("--num-parallel", type=int, default=1)
    parser.add_argument("--max-queue", type=int, default=512)
    args = parser.parse_args(argv)
    engine = None
    if args.real_model:
        from ollama_dist.backends.embedded import LocalModel

        engine = LocalModel()
        engine.load()
    server = FakeOllama(
        args.models or ("gemma3:270m",),
        host=args.host,
        port=args.port,
        num_parallel=args.num_parallel,
        max_queue=args.max_queue,
        latency_s=args.latency,
        engine=engine,
    )
    with server:
        print(f"fake Ollama listening on {server.url} (models: {', '.join(server.models)})", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
