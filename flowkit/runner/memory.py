"""The memory guard: backpressure on the process's resident memory (``max_rss_mb``)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowkit.events import MemoryGuarded, Subscriber

if TYPE_CHECKING:
    from flowkit.runner.tasks import TaskGroup


class MemoryGuard:
    """Backpressure on resident memory: above the ceiling, no new item is admitted.

    A sampler task, owned by the run's task group, reads the process's RSS every 50 ms.
    While it is above the ceiling, workers wait before pulling their next item and work
    already in flight finishes. If memory stays high with nothing in flight, one waiting item
    at a time is let through so the run still ends.
    """

    INTERVAL = 0.05

    def __init__(
        self,
        max_rss_mb: float,
        tasks: TaskGroup,
        busy: Callable[[], bool],
        emit: Subscriber | None,
        run_id: str,
    ) -> None:
        self.limit = max_rss_mb * 1024 * 1024
        self.busy, self.emit, self.run_id = busy, emit, run_id
        self.engaged = False
        self.engagements = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        tasks.start(self._sample(), self.stop)

    async def _sample(self) -> None:
        while True:
            rss = current_rss()
            if rss > self.limit and not self.engaged:
                self.engaged = True
                self.engagements += 1
                self._say(rss)
            elif rss <= self.limit and self.engaged:
                self.engaged = False
                self._say(rss)
                self._wake(len(self._waiters))
            elif self.engaged and not self.busy():
                self._wake(1)
            await asyncio.sleep(self.INTERVAL)

    def _say(self, rss: int) -> None:
        if self.emit is not None:
            self.emit(MemoryGuarded(time.monotonic(), self.run_id, self.engaged, rss / 2**20))

    def _wake(self, n: int) -> None:
        while n > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                n -= 1

    async def admit(self) -> None:
        """Wait until a new item may start."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await fut

    def stop(self) -> None:
        """The sampler has stopped: let every waiter go."""
        self._wake(len(self._waiters))


def current_rss() -> int:
    """Resident memory of this process in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
