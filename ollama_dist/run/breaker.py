"""The latency circuit breaker for the local lane. Its clock is injected.

Closed: local jobs go local while the rolling p95 latency stays under the threshold.
Open: every new local-bound job goes to the cloud, for a cooldown. Half-open: one
probe goes local; a good answer closes the breaker, a slow or failed one re-opens it.
It also opens pre-emptively when the local queue is so deep that the expected wait
passes the threshold (Ollama serves one request per slot; the wait grows linearly).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ollama_dist.config import BreakerSettings

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class Opening:
    at: float
    reason: str


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    rank = max(0, -(-95 * len(ordered) // 100) - 1)
    return ordered[rank]


class Breaker:
    def __init__(self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._window: deque[tuple[float, bool]] = deque(maxlen=settings.window)
        self._state: State = "closed"
        self._opened_at = 0.0
        self._probe_out = False
        self.openings: list[Opening] = []

    @property
    def state(self) -> State:
        if self._state == "open" and self.clock() - self._opened_at >= self.settings.cooldown_s:
            self._state = "half_open"
            self._probe_out = False
        return self._state

    def p95(self) -> float | None:
        return p95([lat for lat, _ in self._window]) if self._window else None

    def typical_latency(self) -> float | None:
        return statistics.median(lat for lat, _ in self._window) if self._window else None

    def expected_wait(self, position: int, slots: int = 1) -> float | None:
        """Seconds a job `position` places from the head of the local queue can expect to wait."""
        typical = self.typical_latency()
        if typical is None or len(self._window) < self.settings.min_samples:
            return None
        return (position // slots + 1) * typical

    def allow(self, queued: int = 0, slots: int = 1) -> tuple[bool, str | None]:
        """May one more job go local now? `queued` jobs already wait for `slots` slots."""
        state = self.state
        if state == "open":
            return False, "breaker_open"
        if state == "half_open":
            if self._probe_out:
                return False, "breaker_open"
            self._probe_out = True
            return True, None
        expected = self.expected_wait(queued, slots)
        if expected is not None:
            if expected > self.settings.p95_threshold_s:
                self._open(f"queue: {queued} waiting for {slots} slot(s), expected wait {expected:.1f}s "
                           f"> {self.settings.p95_threshold_s:g}s")
                return False, "breaker_open"
        return True, None

    def record(self, latency_s: float, ok: bool = True) -> None:
        """One finished local call; an error counts as at least twice the threshold."""
        if not ok:
            latency_s = max(latency_s, 2 * self.settings.p95_threshold_s)
        self._window.append((latency_s, ok))
        state = self.state
        if state == "half_open":
            if ok and latency_s <= self.settings.p95_threshold_s:
                self._state = "closed"
                self._window.clear()
                self._window.append((latency_s, ok))
            else:
                self._open(f"probe {'failed' if not ok else f'took {latency_s:.1f}s'}")
            return
        if state == "closed" and len(self._window) >= self.settings.min_samples:
            current = self.p95()
            if current is not None and current > self.settings.p95_threshold_s:
                self._open(f"p95 {current:.1f}s > {self.settings.p95_threshold_s:g}s")

    def _open(self, reason: str) -> None:
        self._state = "open"
        self._opened_at = self.clock()
        self._probe_out = False
        self.openings.append(Opening(self._opened_at, reason))
