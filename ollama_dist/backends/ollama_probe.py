"""Read-only probes of an Ollama server: version, models pulled (tags), loaded (ps), model info (show).

And `status`, what `ollama-dist ollama status` shows for one host: each route asked on its own,
so a server whose `/api/ps` is missing (a shim, a proxy) still shows its version and models,
and says which route failed how. Also the host rules (`normalize_host`) and the hint for a
server that is not running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict

from ollama_dist.backends.http import request_json
from ollama_dist.errors import BackendError, ConfigError, Unreachable

T = TypeVar("T")
DEFAULT_HOST = "http://127.0.0.1:11434"
STATUS_ROUTES = ("/api/version", "/api/tags", "/api/ps")
START_HINT = "start Ollama (`ollama serve`, or `ollama-dist ollama on`)"


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


class RouteAnswer(BaseModel):
    """What one route of a host answered: fine, or the error (its status and message)."""

    model_config = ConfigDict(frozen=True)

    route: str
    ok: bool
    error: str | None = None


class OllamaStatus(BaseModel):
    """What `ollama-dist ollama status` shows for one host.

    `reachable`: something answered on its port. `routes`: each route's answer; `version`,
    `models` and `loaded` hold what the routes that answered said. `error` sums up the
    failures (None when every route answered).
    """

    model_config = ConfigDict(frozen=True)

    host: str
    reachable: bool
    version: str | None = None
    models: tuple[ModelEntry, ...] = ()
    loaded: tuple[LoadedModel, ...] = ()
    error: str | None = None
    routes: tuple[RouteAnswer, ...] = ()

    def answered(self, route: str) -> bool:
        return any(r.route == route and r.ok for r in self.routes)

    @property
    def complete(self) -> bool:
        """Reachable, and every route answered."""
        return self.reachable and bool(self.routes) and all(r.ok for r in self.routes)


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
    """Reachability, version, available and loaded models of one host, each route on its own.
    Never raises a BackendError: an unreachable or broken server is reported in the result."""
    base = normalize_host(host)
    version, models, loaded = await asyncio.gather(
        _answer(get_version(client, base, timeout_s=timeout_s)),
        _answer(list_models(client, base, timeout_s=timeout_s)),
        _answer(list_loaded(client, base, timeout_s=timeout_s)),
    )
    answers = dict(zip(STATUS_ROUTES, (version, models, loaded), strict=True))
    failures = {route: a for route, a in answers.items() if isinstance(a, BackendError)}
    if len(failures) == len(answers) and all(isinstance(f, Unreachable) for f in failures.values()):
        return OllamaStatus(host=base, reachable=False, error=failures["/api/version"].message)
    return OllamaStatus(
        host=base,
        reachable=True,
        version=None if isinstance(version, BackendError) else version,
        models=() if isinstance(models, BackendError) else models,
        loaded=() if isinstance(loaded, BackendError) else loaded,
        error="; ".join(f"{route}: {f.message}" for route, f in failures.items()) or None,
        routes=tuple(RouteAnswer(route=route, ok=route not in failures,
                                 error=failures[route].message if route in failures else None) for route in answers),
    )


async def _answer(call: Awaitable[T]) -> T | BackendError:
    try:
        return await call
    except BackendError as exc:
        return exc


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
