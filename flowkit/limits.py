"""Concurrency slots and smooth rate limiters, shared by every node that draws on them.

``Slots`` is a FIFO counting semaphore with a synchronous fast path (``try_acquire``) so an
uncontended acquire costs no coroutine. ``RateLimiter`` is a GCRA (virtual scheduling) pacer:
starts are spaced evenly at the configured rate, so no window of the period ever sees a burst
above the rate, unlike a bucket that starts full.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from flowkit.errors import ConfigError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def check_limit(value: object, what: str) -> int:
    """Return ``value`` if it is a positive int, else raise a ConfigError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def _check_rate(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{what} must be a positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Limit:
    """A named budget shared by every node that ``uses`` it.

    ``max_concurrency`` bounds calls in flight; ``rpm`` bounds call starts per minute;
    ``tpm`` bounds tokens per minute (callers say how many tokens a call will use).
    ``burst`` lets that many starts (or tokens, for tpm) go back to back before pacing.
    """

    max_concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    burst: int = 1

    def __post_init__(self) -> None:
        if self.max_concurrency is not None:
            check_limit(self.max_concurrency, "Limit.max_concurrency")
        if self.rpm is not None:
            _check_rate(self.rpm, "Limit.rpm")
        if self.tpm is not None:
            _check_rate(self.tpm, "Limit.tpm")
        check_limit(self.burst, "Limit.burst")
        if self.max_concurrency is None and self.rpm is None and self.tpm is None:
            raise ConfigError("Limit needs at least one of max_concurrency, rpm or tpm")


class Slots:
    """A counting semaphore, FIFO for waiters, with a coroutine-free fast path."""

    __slots__ = ("_waiters", "capacity", "in_use", "peak")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        if self.in_use < self.capacity and not self._waiters:
            self.in_use += 1
            if self.in_use > self.peak:
                self.peak = self.in_use
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # hand the slot over: in_use stays the same
                return
        self.in_use -= 1


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


class NamedLimiter:
    """The run-time form of a ``Limit``: slots plus request and token pacers."""

    def __init__(
        self,
        name: str,
        limit: Limit,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = name
        self.limit = limit
        self.slots = Slots(limit.max_concurrency) if limit.max_concurrency else None
        self.requests = (
            RateLimiter(limit.rpm, burst=limit.burst, clock=clock, sleep=sleep)
            if limit.rpm
            else None
        )
        self.tokens = (
            RateLimiter(limit.tpm, burst=limit.burst, clock=clock, sleep=sleep)
            if limit.tpm
            else None
        )
        self.waited = 0.0

    async def acquire(self, requests: int = 1, tokens: float = 0.0) -> float:
        """Take a slot, then wait for the request and token pacers; return seconds waited."""
        clock = time.monotonic
        t0 = clock()
        if self.slots is not None:
            await self.slots.acquire()
        try:
            if self.requests is not None:
                await self.requests.acquire(requests)
            if self.tokens is not None and tokens > 0:
                await self.tokens.acquire(tokens)
        except BaseException:
            if self.slots is not None:
                self.slots.release()
            raise
        waited = clock() - t0
        self.waited += waited
        return waited

    def release(self) -> None:
        if self.slots is not None:
            self.slots.release()

    def adjust_tokens(self, delta: float) -> None:
        """Correct the token budget once a call's real usage is known."""
        if self.tokens is not None and delta:
            self.tokens.adjust(delta)
