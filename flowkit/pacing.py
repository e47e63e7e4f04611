"""A smooth rate pacer: ``RateLimiter`` is GCRA (virtual scheduling), so starts are spaced
evenly at the configured rate and no window of the period ever sees a burst above the rate,
unlike a bucket that starts full.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """Paces starts at ``rate`` units per ``period`` seconds (GCRA, virtual scheduling).

    Each acquire reserves the next free start time and sleeps until it, so waiters are
    served in order without a lock. ``burst`` units may start back to back.
    """

    def __init__(
        self,
        rate: float,
        period: float = 60.0,
        *,
        burst: int = 1,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.interval = period / rate
        self.tolerance = (burst - 1) * self.interval
        self._clock = clock
        self._sleep = sleep
        self._tat = float("-inf")  # theoretical arrival time of the next unit

    def reserve(self, units: float = 1.0) -> float:
        """Reserve ``units`` and return how long the caller must wait before starting."""
        now = self._clock()
        tat = max(self._tat, now)
        start = max(now, tat - self.tolerance)
        self._tat = tat + units * self.interval
        return start - now

    def adjust(self, units: float) -> None:
        """Correct an earlier reservation by ``units`` (negative gives budget back)."""
        self._tat += units * self.interval

    async def acquire(self, units: float = 1.0) -> float:
        """Wait for the right to start; return the seconds waited."""
        delay = self.reserve(units)
        if delay > 0:
            await self._sleep(delay)
        return delay
