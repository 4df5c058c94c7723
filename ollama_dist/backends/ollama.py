"""The Ollama backend (`POST /api/chat`) on one host or a pool.

The HTTP call and its error translation (shared with openai_compat) are ``backends.http``; the
read-only probes (version, tags, ps, show, status) are ``backends.ollama_probe``; how big a
`num_ctx` a request gets is ``backends.ollama_context``. Their names are re-exported here.

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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import httpx

from ollama_dist.backends.base import Completion, Lane, Request, closed_schema
from ollama_dist.backends.http import request_json as request_json  # re-exported: it lived here
from ollama_dist.backends.ollama_context import estimate_prompt_tokens, num_ctx_for
from ollama_dist.backends.ollama_probe import (
    DEFAULT_HOST,
    START_HINT,
    LoadedModel,
    ModelEntry,
    OllamaStatus,
    get_version,
    list_loaded,
    list_models,
    normalize_host,
    show_context_length,
    status,
)
from ollama_dist.errors import (
    BackendError,
    BadRequest,
    BadResponse,
    Busy,
    ConfigError,
    ModelMissing,
    Unreachable,
)

TRUNCATION_RATIO = 0.5
TRUNCATION_MIN_ESTIMATE = 256
FULL_CONTEXT_RATIO = 0.95


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


__all__ = [
    "DEFAULT_HOST", "START_HINT", "LoadedModel", "ModelEntry", "OllamaBackend", "OllamaStatus", "chat_messages",
    "estimate_prompt_tokens", "get_version", "list_loaded", "list_models", "normalize_host", "num_ctx_for",
    "request_json", "show_context_length", "status",
]


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
