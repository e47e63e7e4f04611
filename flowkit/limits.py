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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowkit.errors import ConfigError

if TYPE_CHECKING:
    from flowkit.budgets import Budget

__all__ = [
    "Limit",
    "LimiterStats",
]

Clock = Callable[[], float]
RATE_WINDOW = 1.0
"""Seconds of use below which an unpaced limiter reports no achieved rate."""
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

    ``max_calls``, ``max_tokens`` and ``max_cost`` are a budget with a hard stop: once the
    calls started, the tokens or the cost charged (``charge``, e.g. by an LLM client from its
    price table) reach one of them, no new call is admitted; calls in flight finish and the
    run ends with the status "budget".
    """

    max_concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    burst: int = 1
    max_calls: int | None = None
    max_tokens: float | None = None
    max_cost: float | None = None

    @property
    def budgeted(self) -> bool:
        """Whether it sets a budget (max_calls, max_tokens or max_cost)."""
        return not (self.max_calls is None and self.max_tokens is None and self.max_cost is None)

    def __post_init__(self) -> None:
        if self.max_concurrency is not None:
            check_limit(self.max_concurrency, "Limit.max_concurrency")
        if self.rpm is not None:
            _check_rate(self.rpm, "Limit.rpm")
        if self.tpm is not None:
            _check_rate(self.tpm, "Limit.tpm")
        check_limit(self.burst, "Limit.burst")
        if self.max_calls is not None:
            check_limit(self.max_calls, "Limit.max_calls")
        for name in ("max_tokens", "max_cost"):
            if getattr(self, name) is not None:
                _check_rate(getattr(self, name), f"Limit.{name}")
        unlimited = self.max_concurrency is None and self.rpm is None and self.tpm is None
        if unlimited and not self.budgeted:
            raise ConfigError(
                "Limit needs at least one of max_concurrency, rpm, tpm, max_calls, max_tokens "
                "or max_cost"
            )


class Slots:
    """A counting semaphore, FIFO for waiters, with a coroutine-free fast path.

    ``waiters`` holds the futures of callers waiting for a slot, first come first served.
    """

    __slots__ = ("capacity", "in_use", "peak", "waiters")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        if self.in_use < self.capacity and not self.waiters:
            self.in_use += 1
            if self.in_use > self.peak:
                self.peak = self.in_use
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            elif fut in self.waiters:  # release() may already have dropped it as cancelled
                self.waiters.remove(fut)
            raise

    def release(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
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


@dataclass
class LimiterStats:
    """How a named limiter was used over a run (what the report's limiter table shows).

    ``calls`` counts requests let through; ``peak_in_flight`` and ``mean_in_flight`` count
    holders of the limiter (mean over ``active_s``, from its first acquire to its last
    release); ``full_share`` is the share of that time every slot was taken; ``achieved_rpm``
    is the start rate between the first and last start; ``users`` maps each node that took
    it to "runner" (its ``uses``), "exec" (code inside exec) or "runner+exec".
    """

    name: str
    max_concurrency: int | None
    rpm: float | None
    tpm: float | None
    calls: int
    tokens: float
    peak_in_flight: int
    mean_in_flight: float
    full_share: float
    active_s: float
    achieved_rpm: float | None
    achieved_tpm: float | None
    waits: int
    wait_s: float
    mean_wait_s: float
    users: dict[str, str]

    def limits_text(self) -> str:
        """Its limits in words, e.g. "3 in flight, 600 rpm"."""
        parts = []
        if self.max_concurrency:
            parts.append(f"{self.max_concurrency} in flight")
        if self.rpm:
            parts.append(f"{self.rpm:g} rpm")
        if self.tpm:
            parts.append(f"{self.tpm:g} tpm")
        return ", ".join(parts)

    def rate_text(self) -> str:
        """Achieved rates against the limits, e.g. "598/min of 600 rpm"."""
        parts = []
        if self.achieved_rpm is not None:
            of = f" of {self.rpm:g} rpm" if self.rpm else ""
            parts.append(f"{self.achieved_rpm:,.0f} calls/min{of}")
        if self.achieved_tpm is not None:
            of = f" of {self.tpm:g} tpm" if self.tpm else ""
            parts.append(f"{self.achieved_tpm:,.0f} tokens/min{of}")
        return ", ".join(parts) or "-"

    def line(self) -> str:
        """One line for an end-of-run summary."""
        cap = f"/{self.max_concurrency}" if self.max_concurrency else ""
        rate = self.rate_text()
        return (
            f"limiter {self.name} ({self.limits_text()}): peak {self.peak_in_flight}{cap} in "
            f"flight, {self.calls:,} calls{'' if rate == '-' else ', ' + rate}, "
            f"{self.waits:,} waited, {self.wait_s:.2f} s in all"
        )


class NamedLimiter:
    """The run-time form of a ``Limit``: slots plus request and token pacers.

    It also meters its own use (calls, holders over time, waits, tokens): ``stats()``;
    ``watch``, when set, hears every change of its holders (``(name, taken, holders)``).
    """

    def __init__(
        self,
        name: str,
        limit: Limit,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        budgets: tuple[Budget, ...] = (),
    ) -> None:
        self.name = name
        self.limit = limit
        self.budgets = budgets
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
        self._clock = clock
        self.waited = 0.0
        self.waits = 0
        self.calls = 0
        self.tokens_used = 0.0
        self.in_use = 0
        self.peak_in_use = 0
        self.users: dict[str, str] = {}
        self._since: float | None = None  # when in_use last changed
        self._first = self._last = 0.0
        self._first_start: float | None = None
        self._last_start = 0.0
        self._area = 0.0  # integral of in_use over time
        self._full = 0.0  # time spent with every slot taken
        self.watch: Callable[[str, bool, int], None] | None = None

    def used_by(self, node: str, how: str) -> None:
        """Note that ``node`` takes this limiter, from the runner or from inside exec."""
        seen = self.users.get(node)
        if seen is None:
            self.users[node] = how
        elif how not in seen.split("+"):
            self.users[node] = "runner+exec"

    async def acquire(self, requests: int = 1, tokens: float = 0.0) -> float:
        """Take a slot, then wait for the request and token pacers; return seconds waited.
        Raises ``BudgetStop`` when one of its budgets is spent (before or after waiting)."""
        for budget in self.budgets:
            budget.check()
        t0 = self._clock()
        blocked = False
        if self.slots is not None and not self.slots.try_acquire():
            blocked = True
            await self.slots.acquire()
        try:
            if self.requests is not None:
                blocked = await self.requests.acquire(requests) > 0 or blocked
            if self.tokens is not None and tokens > 0:
                blocked = await self.tokens.acquire(tokens) > 0 or blocked
            for budget in self.budgets:  # spent while this call waited: it does not start
                budget.check()
        except BaseException:
            if self.slots is not None:
                self.slots.release()
            raise
        now = self._clock()
        waited = now - t0 if blocked else 0.0
        if waited > 0:
            self.waited += waited
            self.waits += 1
        self.calls += requests
        self.tokens_used += tokens
        for budget in self.budgets:
            budget.charge(calls=requests)
        if self._first_start is None:
            self._first_start = self._first = now
        self._last_start = now
        self._tick(now)
        self.in_use += 1
        if self.in_use > self.peak_in_use:
            self.peak_in_use = self.in_use
        if self.watch is not None:
            self.watch(self.name, True, self.in_use)
        return waited

    def release(self) -> None:
        self._tick(self._clock())
        self.in_use -= 1
        if self.slots is not None:
            self.slots.release()
        if self.watch is not None:
            self.watch(self.name, False, self.in_use)

    def adjust_tokens(self, delta: float) -> None:
        """Correct the token budget once a call's real usage is known."""
        self.tokens_used += delta
        if self.tokens is not None and delta:
            self.tokens.adjust(delta)

    def charge(self, *, tokens: float = 0.0, cost: float = 0.0) -> None:
        """Count what a call used against this limiter's budgets (tokens: those really
        used, once known; cost: in the budget's currency, e.g. dollars from a price table)."""
        for budget in self.budgets:
            budget.charge(tokens=tokens, cost=cost)

    @property
    def costed(self) -> bool:
        """Whether a budget here caps cost (so callers should ``charge`` theirs)."""
        return any(b.max_cost is not None for b in self.budgets)

    def _tick(self, now: float) -> None:
        if self._since is not None:
            dt = now - self._since
            self._area += self.in_use * dt
            if self.slots is not None and self.in_use >= self.slots.capacity:
                self._full += dt
        self._since = self._last = now

    def stats(self) -> LimiterStats:
        """Its use so far."""
        active = self._last - self._first
        starts = self._last_start - (self._first_start or 0.0)
        limit = self.limit
        # A rate over a short stretch says little unless the limiter was pacing it.
        rpm = (
            (self.calls - 1) * 60 / starts
            if self.calls > 1 and starts > 0 and (starts >= RATE_WINDOW or limit.rpm)
            else None
        )
        tpm = (
            self.tokens_used * 60 / active
            if self.tokens_used and active > 0 and (active >= RATE_WINDOW or limit.tpm)
            else None
        )
        return LimiterStats(
            name=self.name,
            max_concurrency=limit.max_concurrency,
            rpm=limit.rpm,
            tpm=limit.tpm,
            calls=self.calls,
            tokens=self.tokens_used,
            peak_in_flight=self.peak_in_use,
            mean_in_flight=self._area / active if active > 0 else float(self.peak_in_use),
            full_share=self._full / active if active > 0 else 0.0,
            active_s=active,
            achieved_rpm=rpm,
            achieved_tpm=tpm,
            waits=self.waits,
            wait_s=self.waited,
            mean_wait_s=self.waited / self.calls if self.calls else 0.0,
            users=dict(self.users),
        )


class Limiters:
    """A run's named limiters, made on first use from their ``Limit``s; ``watch`` (when set)
    hears every change of every limiter's holders (see ``NamedLimiter.watch``)."""

    def __init__(
        self,
        limits: Mapping[str, Limit],
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limits, self._clock, self._sleep = limits, clock, sleep
        self._made: dict[str, NamedLimiter] = {}
        self._watch: Callable[[str, bool, int], None] | None = None
        #: The budgets a limiter counts against, given its name and ``Limit`` (set by a run
        #: that has budgets).
        self.budgets_of: Callable[[str, Limit], tuple[Budget, ...]] | None = None

    def defines(self, name: str) -> bool:
        return name in self.limits

    def limiter(self, name: str, user: str) -> NamedLimiter:
        """The limiter ``name``, for ``user`` (a node, or code inside exec)."""
        lim = self._made.get(name)
        if lim is None:
            spec = self.limits.get(name)
            if spec is None:
                known = ", ".join(sorted(self.limits)) or "none"
                raise ConfigError(
                    f"{user}: uses limiter {name!r}, which the runner does not define "
                    f"(defined: {known}); pass Runner(limits={{{name!r}: flowkit.Limit(...)}})"
                )
            budgets = self.budgets_of(name, spec) if self.budgets_of is not None else ()
            lim = self._made[name] = NamedLimiter(
                name, spec, clock=self._clock, sleep=self._sleep, budgets=budgets
            )
            lim.watch = self._watch
        return lim

    def watch(self, hook: Callable[[str, bool, int], None]) -> None:
        """Let ``hook`` hear every change of holders, of the limiters made and to come."""
        self._watch = hook
        for lim in self._made.values():
            lim.watch = hook

    def stats(self) -> dict[str, LimiterStats]:
        """Each limiter's use so far, by name."""
        return {name: lim.stats() for name, lim in sorted(self._made.items())}
