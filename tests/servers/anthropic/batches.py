"""The Message Batches routes of the fake Anthropic API (``/v1/messages/batches``)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tests.servers.anthropic.wire import ApiError, Reply, now, rfc3339

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class Batch:
    id: str
    created: datetime
    started: float
    lines: list[dict[str, Any]]  # one result line per request, in request order
    polls: int = 0
    status: str = "in_progress"
    cancel_initiated: datetime | None = None
    ended: datetime | None = None


class BatchRoutes:
    """The batches half of :class:`~tests.servers.anthropic.server.AnthropicServer` (a mixin).

    A batch stays ``in_progress`` for ``batch_polls`` retrievals, or ``batch_seconds`` when set.
    """

    batch_polls: int
    batch_seconds: float | None
    _lock: threading.Lock
    _batches: dict[str, Batch]
    url: str
    _message: Callable[..., dict[str, Any]]
    _json: Callable[[int, Any], Reply]
    _rid: Callable[[], dict[str, str]]
    _next_id: Callable[[str], str]

    def _batch_route(self, method: str, rest: list[str], body: Any) -> Reply:
        if method == "POST" and not rest:
            return self._json(200, self._batch_view(self._create_batch(body)))
        with self._lock:
            batch = self._batches.get(rest[0]) if rest else None
        if batch is None:
            raise ApiError(404, "The requested message batch could not be found.")
        if method == "GET" and len(rest) == 1:
            self._advance(batch)
            return self._json(200, self._batch_view(batch))
        if method == "GET" and rest[1:] == ["results"]:
            if batch.status != "ended":
                raise ApiError(400, f"Batch {batch.id} has not ended; results are not available yet.")
            lines = "".join(json.dumps(line) + "\n" for line in reversed(batch.lines))
            return Reply(200, lines.encode(), {**self._rid(), "content-type": "application/x-jsonl"})
        if method == "POST" and rest[1:] == ["cancel"]:
            with self._lock:
                if batch.status == "in_progress":
                    batch.status, batch.cancel_initiated = "canceling", now()
            return self._json(200, self._batch_view(batch))
        if method == "DELETE" and len(rest) == 1:
            if batch.status != "ended":
                raise ApiError(400, "A batch must end before it can be deleted.")
            with self._lock:
                del self._batches[batch.id]
            return self._json(200, {"id": batch.id, "type": "message_batch_deleted"})
        raise ApiError(404, f"Not found: {method} /v1/messages/batches/{'/'.join(rest)}")

    def _create_batch(self, body: Any) -> Batch:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise ApiError(400, "requests: field required (a non-empty list)")
        seen: set[str] = set()
        lines = []
        for i, item in enumerate(requests):
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id) or custom_id in seen:
                raise ApiError(400, f"requests.{i}.custom_id: must be unique and match {_CUSTOM_ID.pattern}")
            if not isinstance(item.get("params"), dict):
                raise ApiError(400, f"requests.{i}.params: field required")
            seen.add(custom_id)
            lines.append({"custom_id": custom_id, "result": self._batch_result(item["params"])})
        batch = Batch(self._next_id("msgbatch"), now(), time.monotonic(), lines)
        with self._lock:
            self._batches[batch.id] = batch
        return batch

    def _batch_result(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            if params.get("stream"):
                raise ApiError(400, "stream: batch requests cannot stream")
            if params.get("max_tokens") == 0:
                raise ApiError(400, "max_tokens: must be at least 1 in a batch")
            return {"type": "succeeded", "message": self._message(params, tier="batch")}
        except ApiError as err:
            error = {"type": err.error_type, "message": err.message}
            return {"type": "errored", "error": {"type": "error", "error": error, "request_id": None}}

    def _advance(self, batch: Batch) -> None:
        """One retrieval: a canceling batch ends now, an in-progress one when its time has come."""
        with self._lock:
            batch.polls += 1
            if batch.status == "canceling":
                for line in batch.lines:
                    line["result"] = {"type": "canceled"}
                batch.status, batch.ended = "ended", now()
            elif batch.status == "in_progress":
                if self.batch_seconds is not None:
                    done = time.monotonic() - batch.started >= self.batch_seconds
                else:
                    done = batch.polls > self.batch_polls
                if done:
                    batch.status, batch.ended = "ended", now()

    def _batch_view(self, batch: Batch) -> dict[str, Any]:
        with self._lock:
            counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
            if batch.status == "ended":
                for line in batch.lines:
                    counts[line["result"]["type"]] += 1
            else:
                counts["processing"] = len(batch.lines)
            ended = batch.status == "ended"
            return {
                "id": batch.id,
                "type": "message_batch",
                "processing_status": batch.status,
                "request_counts": counts,
                "created_at": rfc3339(batch.created),
                "expires_at": rfc3339(batch.created + timedelta(hours=24)),
                "ended_at": rfc3339(batch.ended),
                "cancel_initiated_at": rfc3339(batch.cancel_initiated),
                "archived_at": None,
                "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results" if ended else None,
            }
