"""Claude Message Batches: many requests as one job, billed at half the standard price.

`run_batch()` submits `(custom_id, Request)` pairs as one batch, polls with backoff
until it has ended, fetches the results and returns `custom_id -> Completion` or
`custom_id -> BackendError`: a failed item is a value here, not an exception.
Exceptions mean the batch itself could not be submitted, polled or read.

Results come back in no particular order and are matched by `custom_id`. A batch can
take up to 24 hours; `max_wait_s` bounds the waiting (the batch keeps running on the
server; `wait_for_batch` and `fetch_results` can pick it up again by id). Every
succeeded item's usage has `service_tier == "batch"`: price it at the batch rate.

An endpoint without the batches route (an Anthropic-compatible proxy that serves only
`/v1/messages`) answers the create with 404 (or 405): that is `RouteMissing`, not a
missing model, and the caller can send the same requests to the Messages API instead.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ollama_dist.backends.base import Completion, Request
from ollama_dist.backends.claude import ClaudeBackend, batch_request, completion_from_message
from ollama_dist.errors import (
    AuthError,
    BackendError,
    BadRequest,
    BadResponse,
    ModelMissing,
    Overloaded,
    RateLimited,
    RouteMissing,
    Timeout,
)

if TYPE_CHECKING:
    from anthropic.types.messages import MessageBatch

Sleep = Callable[[float], Awaitable[None]]
BatchResult = Completion | BackendError

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ERRORS: dict[str, type[BackendError]] = {
    "invalid_request_error": BadRequest,
    "request_too_large": BadRequest,
    "authentication_error": AuthError,
    "permission_error": AuthError,
    "not_found_error": ModelMissing,
    "rate_limit_error": RateLimited,
    "overloaded_error": Overloaded,
    "timeout_error": Timeout,
}


async def run_batch(
    backend: ClaudeBackend,
    items: Sequence[tuple[str, Request]],
    *,
    sleep: Sleep = asyncio.sleep,
    first_poll_s: float = 5.0,
    max_poll_s: float = 60.0,
    max_wait_s: float | None = None,
) -> dict[str, BatchResult]:
    """Submit, wait, fetch: one result per custom_id (see the module docstring)."""
    if not items:
        return {}
    started = backend.clock()
    batch_id = await submit_batch(backend, items)
    await wait_for_batch(
        backend, batch_id, sleep=sleep, first_poll_s=first_poll_s, max_poll_s=max_poll_s, max_wait_s=max_wait_s
    )
    results = await fetch_results(backend, batch_id, latency_s=backend.clock() - started)
    for custom_id, request in items:
        if custom_id not in results:
            results[custom_id] = BadResponse(f"batch {batch_id} returned no result for {custom_id} ({request.model})")
    return results


async def submit_batch(backend: ClaudeBackend, items: Sequence[tuple[str, Request]]) -> str:
    """Create the batch; returns its id. BadRequest for a bad or repeated custom_id; RouteMissing
    when the endpoint has no batches route."""
    from anthropic import AnthropicError, APIStatusError

    seen: set[str] = set()
    for custom_id, _ in items:
        if not _CUSTOM_ID.match(custom_id) or custom_id in seen:
            raise BadRequest(f"batch custom_id {custom_id!r} must be unique and match {_CUSTOM_ID.pattern}")
        seen.add(custom_id)
    requests = [batch_request(custom_id, backend.prepare(request)) for custom_id, request in items]
    try:
        batch = await backend.client().messages.batches.create(requests=requests)
    except APIStatusError as exc:
        if exc.status_code in (404, 405):  # batch items name their models; only the route can be missing here
            where = str(backend.client().base_url).rstrip("/")
            raise RouteMissing(
                f"{where} has no Message Batches route (POST /v1/messages/batches answered {exc.status_code})",
                hint="drop --cloud-batch for this endpoint, or point ANTHROPIC_BASE_URL at one that serves batches",
            ) from exc
        raise backend.translate(exc, model=items[0][1].model) from exc
    except AnthropicError as exc:
        raise backend.translate(exc, model=items[0][1].model) from exc
    return batch.id


async def wait_for_batch(
    backend: ClaudeBackend,
    batch_id: str,
    *,
    sleep: Sleep = asyncio.sleep,
    first_poll_s: float = 5.0,
    max_poll_s: float = 60.0,
    max_wait_s: float | None = None,
) -> MessageBatch:
    """Poll until `processing_status == "ended"`, doubling the pause up to `max_poll_s`.

    Timeout when the pauses add up to more than `max_wait_s` (None: no bound).
    """
    from anthropic import AnthropicError

    waited, pause = 0.0, first_poll_s
    while True:
        try:
            batch = await backend.client().messages.batches.retrieve(batch_id)
        except AnthropicError as exc:
            raise _translate(backend, exc, batch_id) from exc
        if batch.processing_status == "ended":
            return batch
        if max_wait_s is not None and waited + pause > max_wait_s:
            counts = batch.request_counts
            raise Timeout(
                f"batch {batch_id} still {batch.processing_status} after {waited:g} s "
                f"({counts.processing} requests processing)",
                hint="the batch keeps running on the server; fetch its results later by id",
            )
        await sleep(pause)
        waited += pause
        pause = min(pause * 2, max_poll_s)


async def fetch_results(backend: ClaudeBackend, batch_id: str, *, latency_s: float = 0.0) -> dict[str, BatchResult]:
    """The results of an ended batch, by custom_id. Each item's latency_s is `latency_s`."""
    from anthropic import AnthropicError

    client = backend.client()
    results: dict[str, BatchResult] = {}
    try:
        async for line in await client.messages.batches.results(batch_id):
            result = line.result
            if result.type == "succeeded":
                message, host = result.message, client.base_url.host
                results[line.custom_id] = completion_from_message(
                    message, backend=backend.name, lane=backend.lane, latency_s=latency_s, host=host
                )
            elif result.type == "errored":
                error = result.error.error
                kind = _ERRORS.get(error.type, BadResponse)
                results[line.custom_id] = kind(f"batch item {line.custom_id}: {error.type}: {error.message}")
            elif result.type == "canceled":
                results[line.custom_id] = BackendError(f"batch item {line.custom_id} was canceled")
            else:
                results[line.custom_id] = Timeout(f"batch item {line.custom_id} expired before it was processed")
    except AnthropicError as exc:
        raise _translate(backend, exc, batch_id) from exc
    return results


async def cancel_batch(backend: ClaudeBackend, batch_id: str) -> str:
    """Ask the API to cancel a batch; returns its processing_status (usually "canceling")."""
    from anthropic import AnthropicError

    try:
        batch = await backend.client().messages.batches.cancel(batch_id)
    except AnthropicError as exc:
        raise _translate(backend, exc, batch_id) from exc
    return batch.processing_status


def _translate(backend: ClaudeBackend, exc: Exception, batch_id: str) -> BackendError:
    from anthropic import NotFoundError

    if isinstance(exc, NotFoundError):  # the batch id, not a model, is what is missing
        return BadRequest(f"no message batch {batch_id} on the Anthropic API (404)")
    return backend.translate(exc, model=f"batch {batch_id}")
