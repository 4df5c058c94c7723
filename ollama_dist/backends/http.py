"""HTTP for the backends that speak JSON over httpx (Ollama, OpenAI-compatible servers).

One request with an explicit timeout, and every way it can fail translated into the typed errors
of ``errors.py`` where it enters: transport failures, status codes (with Retry-After), odd bodies.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from ollama_dist.errors import (
    AuthError,
    BackendError,
    BadRequest,
    BadResponse,
    Busy,
    ModelMissing,
    RateLimited,
    Timeout,
    Unreachable,
)


def transport_error(exc: httpx.TransportError, url: str, *, server: str, hint: str | None) -> BackendError:
    """The BackendError for an httpx transport failure while talking to `url`."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return Unreachable(f"cannot connect to {server} at {url}: {exc or type(exc).__name__}", hint=hint)
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(
            f"{server} at {url} did not answer in time ({type(exc).__name__})",
            hint="raise the task's timeout_s, shorten the input, or use a smaller model",
        )
    return BadResponse(f"{server} at {url} broke the connection: {exc or type(exc).__name__}")


def error_message(response: httpx.Response) -> str:
    """The message of an error body: Ollama `{"error": "..."}`, OpenAI `{"error": {"message": ...}}`
    or plain text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return response.text.strip()[:300]


def status_error(response: httpx.Response, *, server: str, model: str) -> BackendError:
    """The BackendError for a non-2xx answer."""
    status = response.status_code
    message = f"{server} answered {status}: {error_message(response)}"
    retry_after = _retry_after(response)
    if status == 404:
        return ModelMissing(message, hint=f"ollama pull {model}")
    if status == 503:
        return Busy(message, hint="lower the concurrency or raise OLLAMA_MAX_QUEUE", retry_after=retry_after)
    if status == 429:
        return RateLimited(message, retry_after=retry_after)
    if status in (401, 403):
        return AuthError(message, hint="check the API key or the proxy in front of the server")
    if status == 400 or status == 422:
        return BadRequest(message)
    return BadResponse(message)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse_json_body(response: httpx.Response, *, server: str) -> dict[str, Any]:
    """The JSON object of a 2xx body, or BadResponse (non-JSON, or an `{"error"}` line)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        for line in response.text.splitlines():  # a streamed body with an error line
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict) and "error" in item:
                raise BadResponse(f"{server} reported an error mid-answer: {item['error']}") from exc
        snippet = response.text.strip()[:120]
        raise BadResponse(f"{server} answered with a body that is not JSON: {snippet!r}") from exc
    if not isinstance(body, dict):
        raise BadResponse(f"{server} answered with JSON that is not an object")
    if "error" in body:
        raise BadResponse(f"{server} reported an error: {body['error']}")
    return body


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    body: dict[str, Any] | None,
    timeout: httpx.Timeout,
    server: str,
    model: str = "",
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One HTTP exchange with every foreign failure translated into ollama_dist.errors."""
    try:
        response = await client.request(method, url, json=body, timeout=timeout, headers=headers)
    except httpx.TransportError as exc:
        raise transport_error(exc, url, server=server, hint=hint) from exc
    if response.status_code >= 300:
        raise status_error(response, server=server, model=model)
    return parse_json_body(response, server=server)
