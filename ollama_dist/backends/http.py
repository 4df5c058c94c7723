"""HTTP for the backends that speak JSON over httpx (Ollama, OpenAI-compatible servers).

One request with an explicit timeout, and every way it can fail translated into the typed errors
of ``errors.py`` where it enters: transport failures, status codes (with Retry-After), odd bodies.
"""

from __future__ import annotations

import json
import re
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
    RouteMissing,
    Timeout,
    Unreachable,
)

# How servers say a model is missing: Ollama `model 'x' not found` (and `model "x" not found, try
# pulling it first`), OpenAI and vLLM `The model `x` does not exist`, others `model not found`.
_MODEL_NOT_FOUND = re.compile(r"\bmodel\b.{0,200}?\b(not found|does not exist)|model_not_found", re.I | re.S)


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
        return _not_found(response, message, server=server, model=model)
    if status == 503:
        return Busy(message, hint="lower the concurrency or raise OLLAMA_MAX_QUEUE", retry_after=retry_after)
    if status == 429:
        return RateLimited(message, retry_after=retry_after)
    if status in (401, 403):
        return AuthError(message, hint="check the API key or the proxy in front of the server")
    if status == 400 or status == 422:
        return BadRequest(message)
    return BadResponse(message)


def _not_found(response: httpx.Response, message: str, *, server: str, model: str) -> BackendError:
    """A 404 names a missing model, or the route is not there: the server does not speak that API."""
    if _MODEL_NOT_FOUND.search(error_message(response)):
        hint = f"ollama pull {model}" if server == "Ollama" else f"check the model name ({model}) the server serves"
        return ModelMissing(message, hint=hint)
    url = response.request.url
    see = "; `ollama-dist ollama status` shows what each route answers" if server == "Ollama" else ""
    return RouteMissing(f"{message}; this server does not speak the {server} API at {url.path}",
                        hint=f"check that {url.scheme}://{url.netloc.decode()} is a {server} server{see}")


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


async def send(
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
) -> httpx.Response:
    """One HTTP exchange: the 2xx response, or every foreign failure translated into ollama_dist.errors."""
    try:
        response = await client.request(method, url, json=body, timeout=timeout, headers=headers)
    except httpx.TransportError as exc:
        raise transport_error(exc, url, server=server, hint=hint) from exc
    if response.status_code >= 300:
        raise status_error(response, server=server, model=model)
    return response


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
    """One HTTP exchange whose 2xx body is a JSON object (see `send` and `parse_json_body`)."""
    response = await send(client, method, url, body=body, timeout=timeout, server=server, model=model, hint=hint,
                          headers=headers)
    return parse_json_body(response, server=server)
