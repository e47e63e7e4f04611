"""Concurrency slots and smooth rate limiters, shared by every node that draws on them.

``Slots`` is a FIFO counting semaphore with a synchronous fast path (``try_acquire``) so an
uncontended acquire costs no coroutine. ``RateLimiter`` is a GCRA (virtual scheduling) pacer:
starts are spaced evenly at the configured rate, so no window of the period ever sees a burst
above the rate, unlike a bucket that starts full. Parts of a limit set to ``"auto"`` are
learned from what the provider says (``flowkit.adaptive``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from flowkit.adaptive import AUTO, AUTO_CEILING, Adaptive, AutoSlots, Quota
from flowkit.errors import ConfigError

__all__ = [
    "Limit",
    "LimiterStats",
    "Quota",
]

DEFAULT_MARGIN = 0.02
"""A fixed or learned rpm is paced this share below the rate: a provider that counts over a
sliding window then never sees one call too many when network jitter bunches two starts."""

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
    ``burst`` lets that many starts (or tokens, for tpm) go back to back before pacing a
    fixed rate.

    ``rpm="auto"`` (or ``tpm="auto"``) paces at the rate the provider states on its
    answers, and waits out its Retry-After on a refusal (a client such as ``nodes.llm``
    reports both). ``max_concurrency="auto"`` adapts calls in flight between 1 and
    ``AUTO_CEILING`` (64): one more per full round of answers, half as many on a refusal or
    a timeout (AIMD); ``adaptive=True`` does the same below an int ``max_concurrency``.
    ``margin`` paces rpm (fixed or learned) and a learned tpm that share below the rate
    (default 2 %), so a provider counting over a sliding window is not overrun; 0 paces at
    the rate exactly. A fixed tpm is paced as given: calls reserve an estimate of their
    tokens (prompt plus the reply's cap) that the real usage only ever lowers.
    """

    max_concurrency: int | Literal["auto"] | None = None
    rpm: float | Literal["auto"] | None = None
    tpm: float | Literal["auto"] | None = None
    burst: int = 1
    margin: float = DEFAULT_MARGIN
    adaptive: bool = False

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency != AUTO:
            check_limit(self.max_concurrency, "Limit.max_concurrency (or 'auto')")
        if self.rpm is not None and self.rpm != AUTO:
            _check_rate(self.rpm, "Limit.rpm (or 'auto')")
        if self.tpm is not None and self.tpm != AUTO:
            _check_rate(self.tpm, "Limit.tpm (or 'auto')")
        check_limit(self.burst, "Limit.burst")
        margin = self.margin
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < 1:
            raise ConfigError(f"Limit.margin must be a share from 0 to below 1, got {margin!r}")
        if self.adaptive and self.max_concurrency is None:
            raise ConfigError(
                "Limit(adaptive=True) adapts calls in flight below a ceiling: give "
                "max_concurrency=N, or max_concurrency='auto' for up to "
                f"{AUTO_CEILING}"
            )
        if self.max_concurrency is None and self.rpm is None and self.tpm is None:
            raise ConfigError("Limit needs at least one of max_concurrency, rpm or tpm")

    @property
    def ceiling(self) -> int | None:
        """The most calls in flight an adaptive limit may open, else None."""
        if self.max_concurrency == AUTO:
            return AUTO_CEILING
        if self.adaptive and isinstance(self.max_concurrency, int):
            return self.max_concurrency
        return None

    @property
    def learns(self) -> tuple[str, ...]:
        """What this limit learns as it runs: some of "concurrency", "rpm", "tpm"."""
        parts = ("concurrency",) if self.ceiling is not None else ()
        return parts + tuple(k for k in ("rpm", "tpm") if getattr(self, k) == AUTO)


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
            else:
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

    A limit that learns (``learns``: "concurrency", "rpm", "tpm") also shows what it
    learned: ``rpm``/``tpm`` are the rates the provider last stated (None: never said),
    ``paced_rpm``/``paced_tpm`` the pace it kept at the end (margin and back-off applied),
    ``concurrency`` its calls in flight allowed at the end (``max_concurrency`` is then the
    ceiling) and the range it moved in; ``refused``, ``timeouts`` and ``paused_s`` count the
    refusals and timeouts reported and the time Retry-After held starts back; ``moves`` is
    how it moved: (seconds since its first call, paced rpm, paced tpm, concurrency).
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
    learns: tuple[str, ...] = ()
    paced_rpm: float | None = None
    paced_tpm: float | None = None
    concurrency: int | None = None
    concurrency_range: tuple[int, int] | None = None
    refused: int = 0
    timeouts: int = 0
    paused_s: float = 0.0
    moves: list[tuple[float, float | None, float | None, int | None]] = field(default_factory=list)

    def limits_text(self) -> str:
        """Its limits in words, e.g. "3 in flight, 600 rpm" or "auto rpm: told 1,200, pacing
        1,176"."""
        parts = []
        if "concurrency" in self.learns:
            lo, hi = self.concurrency_range or (self.concurrency, self.concurrency)
            parts.append(
                f"auto {lo}-{hi} in flight (last {self.concurrency}, ceiling "
                f"{self.max_concurrency})"
            )
        elif self.max_concurrency:
            parts.append(f"{self.max_concurrency} in flight")
        learned = (("rpm", self.rpm, self.paced_rpm), ("tpm", self.tpm, self.paced_tpm))
        for unit, told, paced in learned:
            if unit in self.learns:
                said = f"told {told:,.0f}" if told else "never told"
                pace = f"pacing {paced:,.0f}" if paced else "unpaced"
                parts.append(f"auto {unit}: {said}, {pace}")
            elif told:
                parts.append(f"{told:g} {unit}")
        return ", ".join(parts)

    def learned_text(self) -> str:
        """How a limit that learns moved, e.g. "pace 3,528 -> 1,764 rpm (lowest 1,500);
        1 refused, held 0.50 s by Retry-After"; "" for a fixed limit."""
        if not self.learns:
            return ""
        parts = []
        for unit, paces in (
            ("rpm", [m[1] for m in self.moves if m[1]]),
            ("tpm", [m[2] for m in self.moves if m[2]]),
        ):
            if paces:
                low = min(paces)
                lowest = f" (lowest {low:,.0f})" if low < min(paces[0], paces[-1]) else ""
                parts.append(f"pace {paces[0]:,.0f} -> {paces[-1]:,.0f} {unit}{lowest}")
        refused = f"{self.refused:,} refused, held {self.paused_s:.2f} s by Retry-After"
        timeouts = f", {self.timeouts:,} timed out" if self.timeouts else ""
        return "; ".join([*parts, refused + timeouts])

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
        refused = f", {self.refused:,} refused" if self.refused else ""
        return (
            f"limiter {self.name} ({self.limits_text()}): peak {self.peak_in_flight}{cap} in "
            f"flight, {self.calls:,} calls{'' if rate == '-' else ', ' + rate}{refused}, "
            f"{self.waits:,} waited, {self.wait_s:.2f} s in all"
        )


class NamedLimiter:
    """The run-time form of a ``Limit``: slots plus request and token pacers; ``auto``, the
    part that learns what the provider says (``flowkit.adaptive.Adaptive``), if any.

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
    ) -> None:
        self.name = name
        self.limit = limit
        self.auto: Adaptive | None = None
        cap, rpm, tpm = limit.max_concurrency, limit.rpm, limit.tpm
        self.slots: Slots | AutoSlots | None = Slots(cap) if isinstance(cap, int) else None
        if limit.learns:
            self.auto = Adaptive(
                rpm=rpm == AUTO,
                tpm=tpm == AUTO,
                ceiling=limit.ceiling,
                margin=limit.margin,
                clock=clock,
                sleep=sleep,
            )
            self.slots = self.auto.slots or self.slots
        self.requests = (
            RateLimiter(rpm * (1 - limit.margin), burst=limit.burst, clock=clock, sleep=sleep)
            if rpm is not None and rpm != AUTO
            else None
        )
        self.tokens = (
            RateLimiter(tpm, burst=limit.burst, clock=clock, sleep=sleep)
            if tpm is not None and tpm != AUTO
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

        A limit that learns waits for its learned pace first, so that a slot is only held by
        a call that may start (its adaptive window counts calls at the provider)."""
        t0 = self._clock()
        auto = self.auto
        blocked = auto is not None and await auto.admit(requests, tokens) > 0
        try:
            if self.slots is not None and not self.slots.try_acquire():
                blocked = True
                await self.slots.acquire()
        except BaseException:
            if auto is not None:
                auto.released()
            raise
        try:
            if self.requests is not None:
                blocked = await self.requests.acquire(requests) > 0 or blocked
            if self.tokens is not None and tokens > 0:
                blocked = await self.tokens.acquire(tokens) > 0 or blocked
        except BaseException:
            if self.slots is not None:
                self.slots.release()
            if auto is not None:
                auto.released()
            raise
        now = self._clock()
        waited = now - t0 if blocked else 0.0
        if waited > 0:
            self.waited += waited
            self.waits += 1
        self.calls += requests
        self.tokens_used += tokens
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
        if self.auto is not None:
            self.auto.released()
        if self.watch is not None:
            self.watch(self.name, False, self.in_use)

    def adjust_tokens(self, delta: float) -> None:
        """Correct the token budget once a call's real usage is known."""
        self.tokens_used += delta
        if self.tokens is not None and delta:
            self.tokens.adjust(delta)
        if self.auto is not None and delta:
            self.auto.adjust_tokens(delta)

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
        cap = limit.ceiling or limit.max_concurrency
        given = {
            k: v if isinstance(v, int | float) else None
            for k, v in (("rpm", limit.rpm), ("tpm", limit.tpm))
        }
        learned = self.auto.learned(limit.learns, self._first_start) if self.auto else {}
        return LimiterStats(
            name=self.name,
            max_concurrency=cap if isinstance(cap, int) else None,
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
            **(given | learned),
        )
