"""The latency breaker with an injected clock: opens on p95 or queue depth, probes, closes."""

from __future__ import annotations

import pytest

from ollama_dist.config import BreakerSettings
from ollama_dist.run.breaker import Breaker, p95


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(**kw: float) -> tuple[Breaker, Clock]:
    clock = Clock()
    settings = BreakerSettings(**{"p95_threshold_s": 2.0, "window": 10, "min_samples": 3, "cooldown_s": 30.0,
                                  **kw})
    return Breaker(settings, clock=clock), clock


@pytest.mark.parametrize(("values", "expected"), [
    ([1.0], 1.0), ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 10), (list(range(1, 101)), 95),
], ids=["one", "ten", "hundred"])
def test_p95_nearest_rank(values: list[float], expected: float) -> None:
    assert p95([float(v) for v in values]) == expected


def test_stays_closed_while_fast() -> None:
    b, _ = breaker()
    for _ in range(10):
        assert b.allow() == (True, None)
        b.record(0.5)
    assert b.state == "closed" and b.openings == []


def test_needs_min_samples_before_judging() -> None:
    b, _ = breaker()
    b.record(9.0)
    b.record(9.0)
    assert b.state == "closed"
    b.record(9.0)
    assert b.state == "open" and "p95 9.0s" in b.openings[0].reason


def test_open_diverts_then_half_opens_after_cooldown_and_a_good_probe_closes() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.record(5.0)
    assert b.allow() == (False, "breaker_open")
    clock.now += 29.9
    assert b.state == "open"
    clock.now += 0.2
    assert b.state == "half_open"
    assert b.allow() == (True, None)          # the probe
    assert b.allow() == (False, "breaker_open")  # only one probe at a time
    b.record(0.3)
    assert b.state == "closed" and b.allow() == (True, None)


def test_a_slow_probe_reopens() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.record(5.0)
    clock.now += 31
    assert b.allow() == (True, None)
    b.record(4.0)
    assert b.state == "open" and len(b.openings) == 2 and "probe took 4.0s" in b.openings[1].reason


def test_errors_count_as_slow() -> None:
    b, _ = breaker()
    for _ in range(3):
        b.record(0.01, ok=False)
    assert b.state == "open"


def test_opens_preemptively_when_the_queue_is_too_deep() -> None:
    b, _ = breaker()
    for _ in range(3):
        b.record(0.5)
    assert b.allow(queued=2, slots=1) == (True, None)     # (2 + 1) * 0.5 = 1.5 s
    assert b.allow(queued=4, slots=1) == (False, "breaker_open")  # 2.5 s > 2 s
    assert "queue: 4 waiting" in b.openings[0].reason
    assert b.allow(queued=4, slots=4) == (False, "breaker_open")  # open now, for the cooldown


def test_more_slots_mean_a_shorter_expected_wait() -> None:
    b, _ = breaker()
    for _ in range(3):
        b.record(0.5)
    assert b.allow(queued=4, slots=4) == (True, None)
