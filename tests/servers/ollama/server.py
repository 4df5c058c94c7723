"""The fake Ollama server itself: lifecycle, scripting, routes and the generation flow.

Its halves live beside it (state, faults, model, responses); the package docstring has the API.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Self

from tests.servers.ollama.faults import Fault, FaultInjection
from tests.servers.ollama.handler import Handler, Server, send, send_json, watching_client
from tests.servers.ollama.model import Generation
from tests.servers.ollama.responses import Responses
from tests.servers.ollama.state import ModelState
from tests.servers.ollama.wire import (
    BUSY_MESSAGE,
    NOT_FOUND_PAGE,
    Answers,
    HttpError,
    Job,
    ModelSpec,
    full_name,
    keep_alive_seconds,
    timestamp,
)

if TYPE_CHECKING:
    from ollama_dist.backends.embedded import LocalModel

class FakeOllama(ModelState, FaultInjection, Generation, Responses):
    """A fake Ollama server in a background thread. See the package docstring for the API."""

    def __init__(
        self,
        models: Sequence[str] = ("gemma3:270m",),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        num_parallel: int = 1,
        max_queue: int = 512,
        latency_s: float = 0.0,
        default_num_ctx: int | None = None,
        vram_gib: float = 0.0,
        context_length: int = 32768,
        engine: LocalModel | None = None,
        version: str = "0.15.5",
        broken_routes: Mapping[str, int] | None = None,
        always_stop: bool = False,
        always_stream: bool = False,
    ) -> None:
        self.models = {full_name(n): ModelSpec(full_name(n), context_length=context_length) for n in models}
        self.num_parallel = num_parallel
        self.max_queue = max_queue
        self.latency_s = latency_s
        self.default_num_ctx = default_num_ctx
        self.vram_gib = vram_gib
        self.engine = engine
        self.version = version
        self.broken_routes = dict(broken_routes or {})
        self.always_stop = always_stop
        self.always_stream = always_stream
        self.reloads = 0
        self.cancelled = 0  # generations stopped because their client closed the connection
        self.requests: list[dict[str, Any]] = []
        self.log: list[tuple[str, str]] = []
        self.max_active = 0
        self._bind = (host, port)
        self._cv = threading.Condition()
        self._active = 0
        self._waiting = 0
        self._scripts: dict[str | None, deque[str] | Callable[[dict[str, Any]], str]] = {}
        self._faults: list[Fault] = []
        self._loaded: dict[str, tuple[int, datetime]] = {}
        self._conns: set[socket.socket] = set()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        server = Server(self._bind, Handler)
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
        key = full_name(model) if model else None
        with self._cv:
            self._scripts[key] = answers if callable(answers) else deque(answers)

    def add_model(
        self, name: str, *, context_length: int = 32768, family: str = "gemma3", thinking: bool = False,
        rejects_think: bool = False,
    ) -> None:
        """Serve one more model; `thinking`: it has the capability (a trace in message.thinking)."""
        capabilities = ("completion", "thinking") if thinking else ("completion",)
        spec = ModelSpec(full_name(name), family=family, context_length=context_length, capabilities=capabilities,
                         rejects_think=rejects_think)
        with self._cv:
            self.models[spec.name] = spec

    def reset(self) -> None:
        with self._cv:
            self.requests.clear()
            self.log.clear()
            self._scripts.clear()
            self._faults.clear()
            self._loaded.clear()
            self.max_active = 0
            self.reloads = 0
            self.cancelled = 0

    # --- plumbing --------------------------------------------------------------------
    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._cv:
            (self._conns.add if add else self._conns.discard)(conn)

    def _dispatch(self, h: Handler, method: str) -> None:
        path = h.path.split("?", 1)[0]
        with self._cv:
            self.log.append((method, path))
        routes: dict[tuple[str, str], Callable[[Handler, str], None]] = {
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
        broken = self.broken_routes.get(path)
        try:
            if route is None or broken == 404:
                self._read_body(h)
                send(h, 404, NOT_FOUND_PAGE, "text/plain")
            elif broken is not None:
                self._read_body(h)
                send_json(h, broken, {"error": f"{path} is not available here ({broken})"})
            else:
                route(h, path)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    @staticmethod
    def _read_body(h: Handler) -> bytes:
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    def _json_body(self, h: Handler) -> dict[str, Any]:
        raw = self._read_body(h)
        if not raw.strip():
            raise HttpError(400, "missing request body")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HttpError(400, f"invalid character in request body: {exc.msg}") from exc
        if not isinstance(body, dict):
            raise HttpError(400, "json: cannot unmarshal array into Go value of type api.ChatRequest")
        return body

    # --- small endpoints ---------------------------------------------------------------

    def _root(self, h: Handler, path: str) -> None:
        send(h, 200, b"Ollama is running", "text/plain; charset=utf-8")

    def _version(self, h: Handler, path: str) -> None:
        send_json(h, 200, {"version": self.version})

    def _tags(self, h: Handler, path: str) -> None:
        with self._cv:
            specs = list(self.models.values())
        modified = timestamp(datetime(2026, 1, 1, tzinfo=UTC))
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
        send_json(h, 200, {"models": models})

    def _ps(self, h: Handler, path: str) -> None:
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
                    "expires_at": timestamp(expires),
                    "size_vram": spec.size + num_ctx * 2048 if self.vram_gib else 0,
                    "context_length": num_ctx,
                }
            )
        send_json(h, 200, {"models": models})

    def _show(self, h: Handler, path: str) -> None:
        try:
            body = self._json_body(h)
            name = body.get("model") or body.get("name")
            if not name:
                raise HttpError(400, "model is required")
            spec = self.models.get(full_name(str(name)))
            if spec is None:
                raise HttpError(404, f"model '{name}' not found")
        except HttpError as exc:
            send_json(h, exc.status, {"error": exc.message})
            return
        send_json(
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
                "modified_at": timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
            },
        )

    # --- generation ------------------------------------------------------------------

    def _generation(self, h: Handler, path: str) -> None:
        endpoint: Literal["chat", "generate", "openai"] = (
            "chat" if path == "/api/chat" else "generate" if path == "/api/generate" else "openai"
        )
        try:
            body = self._json_body(h)
            with self._cv:
                self.requests.append(body)
            job = self._job(endpoint, body)
        except HttpError as exc:
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
            with watching_client(h) as gone:
                try:
                    result = self._generate(job, gone)
                except HttpError:
                    if not gone.is_set():
                        raise
            if gone.is_set():  # the client went away: Ollama cancels the request's generation
                with self._cv:
                    self.cancelled += 1
                h.close_connection = True
                return
            self._mark_loaded(job.model, result.num_ctx, job.keep_alive)
            self._respond(h, job, result)
        except HttpError as exc:
            self._fail(h, endpoint, exc.status, exc.message)
        finally:
            self._release()

    def _job(self, endpoint: Literal["chat", "generate", "openai"], body: dict[str, Any]) -> Job:
        model = body.get("model")
        if not model:
            raise HttpError(400, "model is required")
        if full_name(str(model)) not in self.models:
            raise HttpError(404, f"model '{model}' not found")
        options = dict(body.get("options") or {})
        try:
            keep_alive = keep_alive_seconds(body.get("keep_alive"))
        except (ValueError, TypeError) as exc:
            raise HttpError(400, str(exc)) from exc
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
        stream = body.get("stream") is not False or self.always_stream  # absent means streaming
        return Job(endpoint, str(model), messages, options, body.get("format"), stream, keep_alive, body)

    def _openai_job(self, model: str, body: dict[str, Any], keep_alive: float) -> Job:
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
        return Job("openai", model, messages, options, fmt, stream, keep_alive, body, usage)
