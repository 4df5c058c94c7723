"""Is the cloud base URL Anthropic's, or an Ollama server? Ollama also serves the Messages API.

Since `ollama launch claude`, a shell may carry `ANTHROPIC_BASE_URL=http://localhost:11434` for
Claude Code. ollama-dist reads the same variable for its cloud lane; if it pointed at Ollama,
every "cloud" answer would be a local model's, priced and reported as Claude's, and every
escalation a no-op. Two checks, both ConfigError (exit 2) naming the setting and its source:

- `ollama_lookalike` (no network): the URL is on Ollama's port 11434, or on a host and port
  this config uses as a local server (`ollama.hosts`, `ollama.openai_compat`);
- `refuse_ollama` (one GET, for a base URL that is not Anthropic's own, before the first call):
  the server answers Ollama's `/api/version` with a version. No key is sent with it. That one
  is WrongEndpoint (a BackendError that fails the cloud attempt, exit code 2).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import httpx

from ollama_dist.errors import ConfigError, WrongEndpoint

OLLAMA_PORT = 11434
ANTHROPIC_HOSTS = ("api.anthropic.com",)
HINT = ("unset ANTHROPIC_BASE_URL for ollama-dist (`env -u ANTHROPIC_BASE_URL ollama-dist ...`) or set "
        "cloud.base_url to Anthropic's API or your gateway; Ollama is the local tier already (ollama.hosts)")


def _host_port(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    return ("127.0.0.1" if host in ("localhost", "0.0.0.0", "::1", "") else host), port


def ollama_lookalike(base_url: str, local_urls: Iterable[str]) -> str | None:
    """Why `base_url` looks like an Ollama server rather than Anthropic's API, or None."""
    where = _host_port(base_url)
    if where is None:
        return None
    if where[1] == OLLAMA_PORT:
        return f"{base_url} is on port {OLLAMA_PORT}, Ollama's"
    for local in local_urls:
        if _host_port(local) == where:
            return f"{base_url} is the local server {local} of this config"
    return None


def check_not_ollama(base_url: str | None, local_urls: Iterable[str], *, source: str) -> None:
    """ConfigError when the cloud base URL looks like an Ollama server (no network)."""
    if not base_url:
        return
    why = ollama_lookalike(base_url, local_urls)
    if why is not None:
        raise not_claude(base_url, why, source=source)


def not_claude(base_url: str, why: str, *, source: str) -> ConfigError:
    return ConfigError(f"cloud.base_url ({source}) points at Ollama, not Claude: {why}. {_WHY}",
                       field="cloud.base_url", hint=HINT)


_WHY = ("Ollama answers the Anthropic Messages API with local models, so cloud answers and escalations would "
        "be local ones, priced as Claude's")


async def refuse_ollama(base_url: str) -> None:
    """WrongEndpoint when the server at `base_url` answers as Ollama (one GET, no key)."""
    async with httpx.AsyncClient(trust_env=False) as client:
        why = await answers_as_ollama(client, base_url)
    if why is not None:
        raise WrongEndpoint(f"the Claude base URL points at Ollama, not Claude: {why}. {_WHY}", hint=HINT)


async def answers_as_ollama(client: httpx.AsyncClient, base_url: str, *, timeout_s: float = 3.0) -> str | None:
    """Why the server at `base_url` is Ollama (it answers `/api/version`), or None. Never raises."""
    where = _host_port(base_url)
    if where is None or where[0] in ANTHROPIC_HOSTS:
        return None
    try:
        response = await client.get(f"{base_url.rstrip('/')}/api/version", timeout=timeout_s)
        body = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if isinstance(body, dict) and isinstance(body.get("version"), str) and body["version"]:
        return f"{base_url} answers Ollama's /api/version ({body['version']})"
    return None
