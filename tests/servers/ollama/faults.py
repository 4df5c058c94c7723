"""Fault injection for the fake Ollama server: stalls, crashes, non-JSON, mid-stream errors, 503s, hang-ups."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Literal

from tests.servers.ollama.handler import (
    Handler,
    client_gone,
    end_stream,
    send,
    start_stream,
    write_chunk,
)
from tests.servers.ollama.wire import MIDSTREAM_ERROR, RUNNER_CRASH, Job, full_name

FaultKind = Literal["stall", "http_500", "not_json", "midstream_error", "busy", "disconnect"]


@dataclass
class Fault:
    kind: FaultKind
    model: str | None
    remaining: int | None
    seconds: float


class FaultInjection:
    """The fault half of :class:`~tests.servers.ollama.FakeOllama` (a mixin)."""

    _cv: threading.Condition
    _stopping: threading.Event
    _faults: list[Fault]

    def fault(
        self, kind: FaultKind, *, model: str | None = None, times: int | None = 1, seconds: float = 30.0
    ) -> None:
        """Make the next `times` generation requests (None: all) for `model` fail as `kind`."""
        with self._cv:
            self._faults.append(Fault(kind, full_name(model) if model else None, times, seconds))

    def _take_fault(self, model: str) -> Fault | None:
        name = full_name(model)
        with self._cv:
            for fault in self._faults:
                if fault.model in (None, name):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _apply_fault(self, h: Handler, job: Job, fault: Fault) -> bool:
        """Act out `fault`; True when the request is finished."""
        if fault.kind == "stall":
            deadline = time.monotonic() + fault.seconds
            while time.monotonic() < deadline:
                if self._stopping.wait(0.05) or client_gone(h.connection):
                    h.close_connection = True
                    return True
            return False
        if fault.kind == "http_500":
            self._fail(h, job.endpoint, 500, RUNNER_CRASH)
        elif fault.kind == "not_json":
            send(h, 200, b"<html><body><h1>It works!</h1></body></html>", "text/html; charset=utf-8")
        elif fault.kind == "disconnect":
            h.close_connection = True
        elif fault.kind == "midstream_error":
            if not job.stream or job.endpoint == "openai":
                self._fail(h, job.endpoint, 500, MIDSTREAM_ERROR)
            else:
                start_stream(h, "application/x-ndjson")
                write_chunk(h, json.dumps(self._chunk(job, "Yes")).encode() + b"\n")
                write_chunk(h, json.dumps({"error": MIDSTREAM_ERROR}).encode() + b"\n")
                end_stream(h)
                h.close_connection = True
        return True
