"""Virtual time for limiter tests: a clock and a sleep that jumps to the next wake-up."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    """Virtual time: sleepers wake in order of their wake time, and time jumps to it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int]] = []
        self._ids = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        entry = (self.now + seconds, next(self._ids))
        heapq.heappush(self._sleepers, entry)
        try:
            while self._sleepers[0] != entry:
                await asyncio.sleep(0)
        finally:
            self._sleepers.remove(entry)
            heapq.heapify(self._sleepers)
        self.now = max(self.now, entry[0])
