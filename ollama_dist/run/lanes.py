"""The two lanes of a run: their backends and the admission to each.

The cloud lane is a plain semaphore. The local lane is a FIFO queue in front of the
local slots (Ollama serves one request per slot and queues the rest); a job waiting
in it leaves for the cloud when the breaker says its expected wait is too long, so
a saturated local lane spills over instead of making everyone wait.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ollama_dist.backends.base import Backend


class LocalQueue:
    """FIFO admission to `slots` local slots. Waking is targeted: a job is woken only to
    take a slot or to be told to leave, never to re-check (no thundering herd)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.active = 0
        self._waiting: deque[asyncio.Future[bool]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def enter(self) -> bool:
        """Wait for a slot: True when admitted, False when `review` sent the job elsewhere."""
        if self.active < self.slots and not self._waiting:
            self.active += 1
            return True
        ticket: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(ticket)
        try:
            return await ticket
        except asyncio.CancelledError:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            elif ticket.done() and not ticket.cancelled() and ticket.result():
                self.leave()  # admitted just as it was cancelled: give the slot back
            raise

    def leave(self) -> None:
        self.active -= 1
        self._admit()

    def review(self, too_long: Callable[[int], bool]) -> int:
        """Send away every waiting job whose position makes its expected wait too long.

        `too_long(position)` grows with the position, so everything from the first
        position it is true for leaves. Returns how many left.
        """
        cut = next((i for i in range(len(self._waiting)) if too_long(i)), None)
        if cut is None:
            return 0
        leaving = [self._waiting.pop() for _ in range(len(self._waiting) - cut)]
        for ticket in leaving:
            if not ticket.done():
                ticket.set_result(False)
        return len(leaving)

    def _admit(self) -> None:
        while self.active < self.slots and self._waiting:
            ticket = self._waiting.popleft()
            if ticket.done():
                continue
            self.active += 1
            ticket.set_result(True)


class Lanes:
    """The backends of a run and what bounds each lane."""

    def __init__(self, local: Backend | None, cloud: Backend, *, local_slots: int, cloud_slots: int,
                 cloud_ready: bool = True) -> None:
        self.local = local
        self.cloud = cloud
        self.cloud_ready = cloud_ready  # False without an API key: then nothing spills to the cloud
        self.local_slots = local_slots
        self.local_queue = LocalQueue(local_slots)
        self.cloud_sem = asyncio.Semaphore(cloud_slots)

    @property
    def local_waiting(self) -> int:
        return self.local_queue.waiting
