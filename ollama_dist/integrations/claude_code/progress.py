"""`notifications/progress` for a `run_tasks` call: one per finished job, in order.

The run's callbacks (`on_start`, `on_event`) are synchronous; the MCP session's send is
not. Events go into a queue that one task drains, so notifications leave in the order the
jobs finished and their `progress` only grows. Without a progress callback nothing is sent
(the SDK's `report_progress` is itself a no-op when the call carried no progress token).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ollama_dist.run.dispatch import Event

Progress = Callable[[float, float | None, str | None], Awaitable[None]]  # (done, total, message)
Callbacks = tuple[Callable[[Sequence[Any]], None] | None, Callable[["Event"], None] | None]


class JobProgress:
    """`async with JobProgress(send) as (on_start, on_event)`: hand the callbacks to the run."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress, self.total, self.done = progress, 0, 0
        self.queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        self.sender: asyncio.Task[None] | None = None

    def on_start(self, routed: Sequence[Any]) -> None:
        self.total = len(routed)

    def on_event(self, event: Event) -> None:
        self.done += 1
        o = event.outcome
        where = o.actual_model or o.decision.target
        self.queue.put_nowait((self.done, f"{o.job.id}: {o.status} ({where})"))

    async def _send(self) -> None:
        assert self.progress is not None
        while (item := await self.queue.get()) is not None:
            await self.progress(item[0], self.total or None, item[1])

    async def __aenter__(self) -> Callbacks:
        if self.progress is None:
            return None, None
        self.sender = asyncio.get_running_loop().create_task(self._send())
        return self.on_start, self.on_event

    async def __aexit__(self, *exc: object) -> None:
        if self.sender is not None:
            self.queue.put_nowait(None)
            await self.sender
