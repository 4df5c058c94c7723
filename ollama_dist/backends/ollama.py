"""The Ollama backend (`POST /api/chat`) on one host or a pool.

The HTTP call and its error translation (shared with openai_compat) are ``backends.http``; the
read-only probes (version, tags, ps, show, status) are ``backends.ollama_probe``; how big a
`num_ctx` a request gets, and keeping it the same within a run, is ``backends.ollama_context``;
reading the answer's body (JSON, or NDJSON from a server that streams anyway; thinking traces)
is ``backends.ollama_reply``. Their public names are re-exported here.

Why httpx and not the official `ollama.AsyncClient`: the official client has no
timeout by default, turns every connection failure into a bare `ConnectionError`
(refused and unreachable look the same), takes one host per client, hides the
status code of a non-JSON body and fails on an NDJSON body when it asked for none.
One `httpx.AsyncClient` serves a whole host pool, takes an explicit timeout per call,
and lets tests inject a transport. The wire format (PROTOCOLS.md A.2-A.5) is small
enough to speak directly.

Every request is sent with `"stream": false` and an explicit `options.num_ctx`:
without it the server silently truncates anything over its default context
(since Ollama 0.15.5 that default depends on the GPU's memory: 4096 below 23 GiB)
and the only trace is a low `prompt_eval_count`, which this backend turns into a
warning. The num_ctx is pinned per model and host for the backend's life (a run),
since a different one reloads the model. Deterministic jobs (temperature 0 or a
structured answer) are sent `think: false` (`"low"` for gpt-oss, which ignores
booleans): a reasoning trace spends the answer's budget and breaks structured output.
A model that refuses the field is asked again without it, once, and remembered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import httpx

from ollama_dist.backends.base import Completion, Lane, Request, closed_schema
from ollama_dist.backends.http import (
    request_json as request_json,  # re-exported: it lived here
    send,
)
from ollama_dist.backends.ollama_context import ContextPins, estimate_prompt_tokens, needed_tokens, num_ctx_for
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
from ollama_dist.backends.ollama_reply import ChatReply, parse_chat
from ollama_dist.errors import (
    BackendError,
    BadRequest,
    Busy,
    ConfigError,
    ModelMissing,
    RateLimited,
    RouteMissing,
    Timeout,
    Unreachable,
)

TRUNCATION_RATIO = 0.5
TRUNCATION_MIN_ESTIMATE = 256
FULL_CONTEXT_RATIO = 0.95
HARMONY_PREFIXES = ("gpt-oss",)  # take a think level, ignore booleans (docs/capabilities/thinking.mdx)
_TRANSIENT = (Busy, Timeout, RateLimited)  # a hint lookup that failed like this is asked again next time

__all__ = [
    "DEFAULT_HOST", "START_HINT", "LoadedModel", "ModelEntry", "OllamaBackend", "OllamaStatus", "chat_messages",
    "estimate_prompt_tokens", "get_version", "list_loaded", "list_models", "normalize_host", "num_ctx_for",
    "request_json", "show_context_length", "status",
]


def chat_messages(request: Request) -> list[dict[str, str]]:
    """The chat messages of `request`, its system prompt first."""
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages.extend({"role": m.role, "content": m.content} for m in request.messages)
    return messages


def deterministic(request: Request) -> bool:
    """A job whose answer should not wander: temperature 0, or a structured answer."""
    return request.temperature == 0 or request.schema_ is not None or request.output_format != "text"


@dataclass
class _HostState:
    slots: int = 1
    in_flight: int = 0
    down_until: float = 0.0


@dataclass
class _ModelHints:
    """What a host said about a model, asked once: trained context (/api/show), loaded one (/api/ps)."""

    limit: int | None = None
    loaded: int | None = None


class OllamaBackend:
    """`POST /api/chat` on one Ollama host or a pool of them; lane "local".

    hosts: base URLs or `OLLAMA_HOST`-style values. With several, each call goes to
        the host with the most room (calls in flight from this instance per slot); a
        host that refuses the connection is marked down for `down_for_s` and the next
        is tried; a busy (503) host, one missing the model and one that does not
        speak the Ollama API (404 on the route) are skipped too.
    slots: requests each host serves at once (its OLLAMA_NUM_PARALLEL), by host;
        unlisted hosts have 1.
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
        slots: Mapping[str, int] | None = None,
        client: httpx.AsyncClient | None = None,
        keep_alive: str | int = "10m",
        connect_timeout_s: float = 5.0,
        down_for_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not hosts:
            raise ConfigError("no Ollama host configured", field="hosts")
        self.hosts = tuple(dict.fromkeys(normalize_host(h) for h in hosts))
        given = {normalize_host(h): max(1, n) for h, n in (slots or {}).items()}
        self._client = client
        self._owns_client = client is None
        self._keep_alive = keep_alive
        self._connect_timeout_s = connect_timeout_s
        self._down_for_s = down_for_s
        self._clock = clock
        self._state = {h: _HostState(slots=given.get(h, 1)) for h in self.hosts}
        self._hints: dict[tuple[str, str], _ModelHints] = {}
        self._hint_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._pins = ContextPins()
        self._no_think: set[tuple[str, str]] = set()

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

    def slots(self, host: str) -> int:
        """Requests `host` serves at once, as configured."""
        return self._state[normalize_host(host)].slots

    def num_ctx(self, host: str, model: str) -> int | None:
        """The num_ctx this backend sends `model` on `host` now (None before its first call)."""
        return self._pins.get(normalize_host(host), model)

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
        return sorted(up, key=lambda h: (self._state[h].in_flight / self._state[h].slots, self._state[h].in_flight))

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
            except (Busy, ModelMissing, RouteMissing) as exc:
                failures.append(exc)
        error = self._pool_error(failures)
        if any(error is f for f in failures):
            raise error  # keeps its own cause, the httpx exception
        raise error from failures[-1]

    def _pool_error(self, failures: list[BackendError]) -> BackendError:
        if len(failures) == 1:
            return failures[0]
        for kind in (Busy, ModelMissing, RouteMissing):
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
            hints = await self._model_hints(host, request.model, timeout)
            num_ctx = self._pins.choose(host, request.model, needed_tokens(request), limit=hints.limit,
                                        loaded=hints.loaded)
            started = self._clock()
            reply, think = await self._chat(host, request, num_ctx, timeout)
            latency = self._clock() - started
        finally:
            state.in_flight -= 1
        return self._completion(reply, request, host, num_ctx, hints.limit, latency, think)

    async def _chat(self, host: str, request: Request, num_ctx: int,
                    timeout: httpx.Timeout) -> tuple[ChatReply, bool | str | None]:
        think = self._think(host, request)
        try:
            return await self._post_chat(host, self._chat_body(request, num_ctx, think), request, timeout), think
        except BadRequest as exc:
            if think is None or "think" not in exc.message.lower():
                raise
            self._no_think.add((host, request.model))  # this model refuses the field: never send it again
            body = self._chat_body(request, num_ctx, None)
            return await self._post_chat(host, body, request, timeout), None

    async def _post_chat(self, host: str, body: dict[str, Any], request: Request,
                         timeout: httpx.Timeout) -> ChatReply:
        response = await send(self._http(), "POST", f"{host}/api/chat", body=body, timeout=timeout,
                              server="Ollama", model=request.model, hint=START_HINT)
        return parse_chat(response, where=host)

    def _think(self, host: str, request: Request) -> bool | str | None:
        if not deterministic(request) or (host, request.model) in self._no_think:
            return None
        return "low" if request.model.startswith(HARMONY_PREFIXES) else False

    def _chat_body(self, request: Request, num_ctx: int, think: bool | str | None) -> dict[str, Any]:
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
        if think is not None:
            body["think"] = think
        if request.seed is not None:
            body["options"]["seed"] = request.seed
        if request.schema_ is not None:
            body["format"] = closed_schema(request.schema_)
        elif request.output_format in ("json", "yaml"):
            body["format"] = "json"
        return body

    def _completion(self, reply: ChatReply, request: Request, host: str, num_ctx: int, limit: int | None,
                    latency: float, think: bool | str | None) -> Completion:
        estimate = estimate_prompt_tokens(request)
        prompt_tokens = reply.prompt_eval_count
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
        stop_reason = reply.done_reason
        if 0 < request.max_tokens <= reply.eval_count and stop_reason != "length":
            warnings.append(f"the server said {stop_reason or 'nothing'!r}, but the answer used all "
                            f"{request.max_tokens} tokens of num_predict: taken as cut off")
            stop_reason = "length"
        thinking_tokens = _share(reply.eval_count, len(reply.thinking), len(reply.content))
        if reply.thinking and think is not None:
            warnings.append(f"{request.model} reasoned though asked not to (think: {think}); "
                            f"~{thinking_tokens} of {reply.eval_count} generated tokens were its trace")
        if reply.streamed:
            warnings.append(f"Ollama at {host} streamed its answer though asked not to")
        return Completion(
            text=reply.content,
            model=reply.model or request.model,
            backend=self.name,
            lane=self.lane,
            input_tokens=prompt_tokens,
            output_tokens=reply.eval_count,
            thinking_tokens=thinking_tokens,
            latency_s=latency,
            stop_reason=stop_reason,
            host=host,
            warnings=tuple(warnings),
        )

    async def _model_hints(self, host: str, model: str, timeout: httpx.Timeout) -> _ModelHints:
        """The trained and the loaded context of `model` on `host`: hints for sizing, never a reason to fail.

        A route that fails (404 on a server without it, 401 behind a proxy, 503) leaves the hint
        unknown and num_ctx is sized from the request alone; only a refused connection, which
        the chat itself would meet, goes on.
        """
        key = (host, model)
        if key in self._hints:
            return self._hints[key]
        async with self._hint_locks.setdefault(key, asyncio.Lock()):  # one lookup for a burst
            if key in self._hints:
                return self._hints[key]
            hints, transient = _ModelHints(), False
            try:
                hints.limit = await show_context_length(self._http(), host, model, timeout=timeout)
            except Unreachable:
                raise
            except BackendError as exc:
                transient = isinstance(exc, (*_TRANSIENT, ModelMissing))
            try:
                loaded = await list_loaded(self._http(), host, timeout_s=min(5.0, timeout.read or 5.0))
                hints.loaded = next((m.context_length for m in loaded if _same_model(m.name, model)), None)
            except BackendError:
                pass
            if not transient:
                self._hints[key] = hints
            return hints


def _same_model(listed: str, model: str) -> bool:
    full = model if ":" in model else f"{model}:latest"
    return listed in (model, full)


def _share(total: int, part: int, rest: int) -> int:
    """`total` tokens apportioned to `part` of `part + rest` characters (Ollama counts the trace in
    eval_count without saying how much of it was the trace)."""
    return round(total * part / (part + rest)) if part and total else 0
