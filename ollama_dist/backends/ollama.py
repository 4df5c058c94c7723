"""The Ollama backend (`POST /api/chat`) and the status probes the CLI needs.

The HTTP call and its error translation (shared with openai_compat) are ``backends.http``.

Why httpx and not the official `ollama.AsyncClient`: the official client has no
timeout by default, turns every connection failure into a bare `ConnectionError`
(refused and unreachable look the same), takes one host per client and hides the
status code of a non-JSON body. One `httpx.AsyncClient` serves a whole host pool,
takes an explicit timeout per call, and lets tests inject a transport. The wire
format (PROTOCOLS.md A.2-A.5) is small enough to speak directly.

Every request is sent with `"stream": false` and an explicit `options.num_ctx`:
without it the server silently truncates anything over its default context
(4096 tokens on a CPU-only machine) and the only trace is a low
`prompt_eval_count`, which this backend turns into a warning.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import httpx
from pydantic import BaseModel, ConfigDict

from ollama_dist.backends.base import Completion, Lane, Request, closed_schema
from ollama_dist.backends.http import request_json as request_json  # re-exported: it lived here
from ollama_dist.errors import (
    BackendError,
    BadRequest,
    BadResponse,
    Busy,
    ConfigError,
    ModelMissing,
    Unreachable,
)

DEFAULT_HOST = "http://127.0.0.1:11434"
START_HINT = "start Ollama (`ollama serve`, or `ollama-dist ollama on`)"
BYTES_PER_TOKEN_ESTIMATE = 3  # conservative: English runs ~4 chars a token, code ~3
TEMPLATE_TOKENS_PER_MESSAGE = 8
CONTEXT_HEADROOM_TOKENS = 256
MIN_NUM_CTX = 2048
TRUNCATION_RATIO = 0.5
TRUNCATION_MIN_ESTIMATE = 256
FULL_CONTEXT_RATIO = 0.95


def normalize_host(host: str) -> str:
    """An `OLLAMA_HOST`-style value as a base URL, following Ollama's own rules (A.1).

    No scheme means http on port 11434; `http://h` means port 80 and `https://h`
    port 443; 0.0.0.0 (a bind address) is reached as 127.0.0.1.
    """
    text = host.strip().rstrip("/")
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest, default_port = "http", text, 11434
    else:
        default_port = 443 if scheme == "https" else 80
    hostport, _, path = rest.partition("/")
    try:
        url = httpx.URL(f"{scheme}://{hostport or '127.0.0.1'}")
    except httpx.InvalidURL as exc:
        raise ConfigError(f"invalid Ollama host {host!r}: {exc}", field="hosts") from exc
    name = url.host or "127.0.0.1"
    if name in ("0.0.0.0", "::"):
        name = "127.0.0.1"
    if ":" in name:
        name = f"[{name}]"
    port = url.port or default_port
    return f"{scheme}://{name}:{port}" + (f"/{path}" if path else "")


def estimate_tokens(text: str) -> int:
    """A deliberately generous token estimate: UTF-8 bytes / 3, rounded up."""
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN_ESTIMATE)


def estimate_prompt_tokens(request: Request) -> int:
    texts = [request.system] if request.system else []
    texts.extend(m.content for m in request.messages)
    return sum(estimate_tokens(t) + TEMPLATE_TOKENS_PER_MESSAGE for t in texts)


def num_ctx_for(request: Request, limit: int | None = None) -> int:
    """A context window that holds the prompt and the answer: a multiple of 1024, at
    least 2048, capped by the model's context length `limit` when it is known."""
    needed = estimate_prompt_tokens(request) + max(request.max_tokens, 0) + CONTEXT_HEADROOM_TOKENS
    ctx = max(MIN_NUM_CTX, math.ceil(needed / 1024) * 1024)
    return min(ctx, limit) if limit else ctx


def chat_messages(request: Request) -> list[dict[str, str]]:
    """The chat messages of `request`, its system prompt first."""
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages.extend({"role": m.role, "content": m.content} for m in request.messages)
    return messages


# --- the backend --------------------------------------------------------------------


@dataclass
class _HostState:
    in_flight: int = 0
    down_until: float = 0.0


class OllamaBackend:
    """`POST /api/chat` on one Ollama host or a pool of them; lane "local".

    hosts: base URLs or `OLLAMA_HOST`-style values. With several, each call goes to
        the host with the fewest calls in flight (from this instance); a host that
        refuses the connection is marked down for `down_for_s` and the next is tried;
        a busy (503) host or one missing the model is skipped too.
    client: an `httpx.AsyncClient` to use (not closed by the backend); by default the
        backend makes one, closed by `aclose()` / `async with`.
    keep_alive: sent with every request ("10m"; a number is seconds).
    connect_timeout_s: the connect part of every timeout; the rest is `request.timeout_s`.
    clock: monotonic seconds, for latency and for the down marks.
    """

    name: str = "ollama"
    lane: Lane = "local"

    def __init__(
        self,
        hosts: Sequence[str] = (DEFAULT_HOST,),
        *,
        client: httpx.AsyncClient | None = None,
        keep_alive: str | int = "10m",
        connect_timeout_s: float = 5.0,
        down_for_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not hosts:
            raise ConfigError("no Ollama host configured", field="hosts")
        self.hosts = tuple(dict.fromkeys(normalize_host(h) for h in hosts))
        self._client = client
        self._owns_client = client is None
        self._keep_alive = keep_alive
        self._connect_timeout_s = connect_timeout_s
        self._down_for_s = down_for_s
        self._clock = clock
        self._state = {h: _HostState() for h in self.hosts}
        self._context_lengths: dict[tuple[str, str], int | None] = {}
        self._show_locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def in_flight(self, host: str) -> int:
        """Calls this backend has in flight on `host`."""
        return self._state[normalize_host(host)].in_flight

    def down_hosts(self) -> tuple[str, ...]:
        """Hosts skipped for now because they refused a connection recently."""
        now = self._clock()
        return tuple(h for h in self.hosts if self._state[h].down_until > now)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                trust_env=False,  # local servers are reached directly, never through a proxy
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
        return self._client

    def _timeout(self, seconds: float) -> httpx.Timeout:
        return httpx.Timeout(seconds, connect=min(self._connect_timeout_s, seconds))

    def _candidates(self) -> list[str]:
        now = self._clock()
        up = [h for h in self.hosts if self._state[h].down_until <= now]
        return sorted(up, key=lambda h: self._state[h].in_flight)

    async def complete(self, request: Request) -> Completion:
        candidates = self._candidates()
        if not candidates:
            wait = min(s.down_until for s in self._state.values()) - self._clock()
            raise Unreachable(
                f"no Ollama host is reachable ({', '.join(self.hosts)} refused recently)",
                hint=START_HINT,
                retry_after=max(wait, 0.0),
            )
        failures: list[BackendError] = []
        for host in candidates:
            try:
                return await self._complete_on(host, request)
            except Unreachable as exc:
                self._state[host].down_until = self._clock() + self._down_for_s
                failures.append(exc)
            except (Busy, ModelMissing) as exc:
                failures.append(exc)
        error = self._pool_error(failures)
        if any(error is f for f in failures):
            raise error  # keeps its own cause, the httpx exception
        raise error from failures[-1]

    def _pool_error(self, failures: list[BackendError]) -> BackendError:
        if len(failures) == 1:
            return failures[0]
        for kind in (Busy, ModelMissing):
            found = [f for f in failures if isinstance(f, kind)]
            if found:
                return found[-1]
        return Unreachable(
            f"no Ollama host is reachable: {'; '.join(f.message for f in failures)}", hint=START_HINT
        )

    async def _complete_on(self, host: str, request: Request) -> Completion:
        state = self._state[host]
        state.in_flight += 1
        try:
            timeout = self._timeout(request.timeout_s)
            limit = await self._context_length(host, request.model, timeout)
            num_ctx = num_ctx_for(request, limit)
            started = self._clock()
            data = await request_json(
                self._http(),
                "POST",
                f"{host}/api/chat",
                body=self._chat_body(request, num_ctx),
                timeout=timeout,
                server="Ollama",
                model=request.model,
                hint=START_HINT,
            )
            latency = self._clock() - started
        finally:
            state.in_flight -= 1
        return self._completion(data, request, host, num_ctx, limit, latency)

    def _chat_body(self, request: Request, num_ctx: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": chat_messages(request),
            "stream": False,
            "options": {
                "num_ctx": num_ctx,
                "temperature": request.temperature,
                "num_predict": request.max_tokens,
            },
            "keep_alive": self._keep_alive,
        }
        if request.seed is not None:
            body["options"]["seed"] = request.seed
        if request.schema_ is not None:
            body["format"] = closed_schema(request.schema_)
        elif request.output_format in ("json", "yaml"):
            body["format"] = "json"
        return body

    def _completion(
        self, data: dict[str, Any], request: Request, host: str, num_ctx: int, limit: int | None, latency: float
    ) -> Completion:
        message = data.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise BadResponse(f"Ollama at {host} answered without message.content")
        prompt_tokens = _int(data.get("prompt_eval_count"))
        estimate = estimate_prompt_tokens(request)
        warnings: list[str] = []
        if limit is not None and estimate + request.max_tokens > limit:
            warnings.append(f"prompt (~{estimate} tokens) may not fit the model's context length ({limit})")
        filled = prompt_tokens >= FULL_CONTEXT_RATIO * num_ctx  # num_ctx was sized to leave room
        far_below = estimate >= TRUNCATION_MIN_ESTIMATE and prompt_tokens < TRUNCATION_RATIO * estimate
        if prompt_tokens and (filled or far_below):
            warnings.append(
                f"probable truncation: the server read {prompt_tokens} prompt tokens, ~{estimate} were sent "
                f"(num_ctx {num_ctx})"
            )
        return Completion(
            text=content,
            model=str(data.get("model") or request.model),
            backend=self.name,
            lane=self.lane,
            input_tokens=prompt_tokens,
            output_tokens=_int(data.get("eval_count")),
            latency_s=latency,
            stop_reason=str(data["done_reason"]) if data.get("done_reason") else None,
            host=host,
            warnings=tuple(warnings),
        )

    async def _context_length(self, host: str, model: str, timeout: httpx.Timeout) -> int | None:
        key = (host, model)
        if key in self._context_lengths:
            return self._context_lengths[key]
        async with self._show_locks.setdefault(key, asyncio.Lock()):  # one /api/show for a burst
            if key not in self._context_lengths:
                try:
                    length = await show_context_length(self._http(), host, model, timeout=timeout)
                except (BadResponse, BadRequest):
                    return None  # an odd /api/show is no reason to fail the call itself
                self._context_lengths[key] = length
        return self._context_lengths[key]


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


# --- status probes ------------------------------------------------------------------


class ModelEntry(BaseModel):
    """One model from `/api/tags`."""

    model_config = ConfigDict(frozen=True)

    name: str
    size: int = 0
    family: str | None = None
    parameter_size: str | None = None
    quantization: str | None = None


class LoadedModel(BaseModel):
    """One model from `/api/ps`: what is in memory, with which context."""

    model_config = ConfigDict(frozen=True)

    name: str
    context_length: int | None = None
    size: int = 0
    size_vram: int = 0
    expires_at: str | None = None


class OllamaStatus(BaseModel):
    """What `ollama-dist ollama status` shows for one host."""

    model_config = ConfigDict(frozen=True)

    host: str
    reachable: bool
    version: str | None = None
    models: tuple[ModelEntry, ...] = ()
    loaded: tuple[LoadedModel, ...] = ()
    error: str | None = None


def _probe_timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


async def get_version(client: httpx.AsyncClient, host: str, *, timeout_s: float = 5.0) -> str:
    base = normalize_host(host)
    data = await request_json(
        client, "GET", f"{base}/api/version", body=None, timeout=_probe_timeout(timeout_s), server="Ollama",
        hint=START_HINT
    )
    return str(data.get("version", ""))


async def list_models(client: httpx.AsyncClient, host: str, *, timeout_s: float = 5.0) -> tuple[ModelEntry, ...]:
    base = normalize_host(host)
    data = await request_json(
        client, "GET", f"{base}/api/tags", body=None, timeout=_probe_timeout(timeout_s), server="Ollama",
        hint=START_HINT
    )
    entries = []
    for item in _dicts(data.get("models")):
        raw_details = item.get("details")
        details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
        entries.append(
            ModelEntry(
                name=str(item.get("name") or item.get("model") or "?"),
                size=_int(item.get("size")),
                family=details.get("family"),
                parameter_size=details.get("parameter_size"),
                quantization=details.get("quantization_level"),
            )
        )
    return tuple(entries)


async def list_loaded(client: httpx.AsyncClient, host: str, *, timeout_s: float = 5.0) -> tuple[LoadedModel, ...]:
    base = normalize_host(host)
    data = await request_json(
        client, "GET", f"{base}/api/ps", body=None, timeout=_probe_timeout(timeout_s), server="Ollama", hint=START_HINT
    )
    return tuple(
        LoadedModel(
            name=str(item.get("name") or item.get("model") or "?"),
            context_length=_int(item.get("context_length")) or None,
            size=_int(item.get("size")),
            size_vram=_int(item.get("size_vram")),
            expires_at=item.get("expires_at") if isinstance(item.get("expires_at"), str) else None,
        )
        for item in _dicts(data.get("models"))
    )


async def show_context_length(
    client: httpx.AsyncClient, host: str, model: str, *, timeout: httpx.Timeout | None = None
) -> int | None:
    """The trained context length from `/api/show` (`model_info["<family>.context_length"]`),
    None when the server does not say. A missing model raises ModelMissing."""
    base = normalize_host(host)
    data = await request_json(
        client,
        "POST",
        f"{base}/api/show",
        body={"model": model},
        timeout=timeout or _probe_timeout(5.0),
        server="Ollama",
        model=model,
        hint=START_HINT,
    )
    info = data.get("model_info")
    if not isinstance(info, dict):
        return None
    lengths = [_int(v) for k, v in info.items() if isinstance(k, str) and k.endswith(".context_length")]
    return max(lengths) if any(lengths) else None


async def status(client: httpx.AsyncClient, host: str, *, timeout_s: float = 5.0) -> OllamaStatus:
    """Reachability, version, available and loaded models of one host. Never raises
    a BackendError: an unreachable or broken server is reported in the result."""
    base = normalize_host(host)
    try:
        version = await get_version(client, base, timeout_s=timeout_s)
        models = await list_models(client, base, timeout_s=timeout_s)
        loaded = await list_loaded(client, base, timeout_s=timeout_s)
    except Unreachable as exc:
        return OllamaStatus(host=base, reachable=False, error=exc.message)
    except BackendError as exc:
        return OllamaStatus(host=base, reachable=True, error=exc.message)
    return OllamaStatus(host=base, reachable=True, version=version, models=models, loaded=loaded)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
