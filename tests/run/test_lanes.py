"""The local queue: FIFO admission, targeted spill-over, cancellation gives slots back."""

from __future__ import annotations

import asyncio

from ollama_dist.backends.base import closed_schema
from ollama_dist.run.lanes import LocalQueue


async def test_fifo_admission_and_spill_from_the_tail() -> None:
    queue = LocalQueue(slots=1)
    assert await queue.enter()
    waiters = [asyncio.create_task(queue.enter()) for _ in range(5)]
    await asyncio.sleep(0)
    assert queue.waiting == 5
    assert queue.review(lambda position: position >= 2) == 3  # positions 2, 3, 4 leave
    await asyncio.sleep(0)
    assert [w.result() for w in waiters[2:]] == [False, False, False]
    queue.leave()
    await asyncio.sleep(0)
    assert waiters[0].result() is True and not waiters[1].done()
    queue.leave()
    await asyncio.sleep(0)
    assert waiters[1].result() is True and queue.active == 1


async def test_a_cancelled_waiter_leaves_no_hole() -> None:
    queue = LocalQueue(slots=1)
    assert await queue.enter()
    first = asyncio.create_task(queue.enter())
    second = asyncio.create_task(queue.enter())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    queue.leave()
    await asyncio.sleep(0)
    assert second.result() is True and queue.active == 1 and queue.waiting == 0


def test_closed_schema_only_restricts() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {}}}},
              "items": [{"properties": {}}]}
    closed = closed_schema(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # the original is untouched
    open_ = {"type": "object", "properties": {}, "additionalProperties": True}
    assert closed_schema(open_)["additionalProperties"] is True
