"""Limits that learn the provider's rate: the quotas it states, its refusals, AIMD concurrency.

A named limiter with ``rpm="auto"`` (or ``tpm="auto"``) paces starts at the rate the provider
states (a ``Quota``), less the limit's safety margin. Before it is told anything it probes
(slow start: one call, then two more per answer). A refusal pauses every start for the
provider's Retry-After and backs the pace off (multiplicatively, once per round of calls),
which then recovers linearly. Told nothing but refusals, it paces just below the rate it
had answered over the last ``PROBE_WINDOW_S`` seconds. With adaptive concurrency, slots
grow by one per full window of answers and halve on a refusal or a timeout (AIMD).

flowkit knows no provider: a client (e.g. ``nodes.llm``) turns what its provider said into
these generic signals through the run's limiter handle.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

AUTO: Literal["auto"] = "auto"
AUTO_CEILING = 64
"""Most calls in flight for ``max_concurrency="auto"``."""
START_CONCURRENCY = 4
"""Slots an adaptive limiter opens with (slow start doubles them per round of answers)."""
CONCURRENCY_BACKOFF = 0.5
"""Adaptive slots are multiplied by this on a refusal or a timeout."""
RATE_BACKOFF = 0.85
"""A learned pace is multiplied by this on a refusal (once per round of calls)..."""
RATE_RECOVERY = 0.02
"""...and recovers by this share of the provider's rate per second, up to all of it."""
PROBE_WINDOW_S = 10.0
"""Told only refusals, the pace restarts just below what was answered over this span."""
CATCH_UP_S = 0.1
"""Starts delayed by a busy event loop are made up for this long at most (a burst of at most
this share of the pace: a provider counting over a window of 5 s or more, less the 2 %
margin, still never sees one too many)."""
HOLDOFF_S = 1.0
"""Refusals reported without their call's start time back off at most once this often."""
MAX_MOVES = 200
"""Most points kept of how the learned rate and concurrency moved."""

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Quota:
    """What a provider said about one of its limits on one response: ``limit`` units per
    ``period_s`` seconds, ``remaining`` of them left, full again in ``reset_s`` seconds."""

    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None
    period_s: float = 60.0

    @property
    def rate(self) -> float | None:
        """The stated rate, in units per second."""
        return self.limit / self.period_s if self.limit and self.period_s > 0 else None


class Pace:
    """A learned pacer for one unit (requests or tokens).

    ``stated`` is the provider's rate (units per second); the pace is ``stated * (1 -
    margin) * factor``, where ``factor`` drops on refusals and recovers with time. Told only
    refusals, ``base`` (what was answered lately) stands in for the stated rate. With
    neither, the pace is None: unpaced (the limiter probes instead). ``tat`` is when the
    next unit may start (GCRA's theoretical arrival time).
    """

    def __init__(self, margin: float) -> None:
        self.margin = margin
        self.stated: float | None = None
        self.base: float | None = None
        self._factor = 1.0
        self._since = 0.0  # when the factor was last lowered
        self.tat = -math.inf

    def factor(self, now: float) -> float:
        """The share of the stated (or base) rate paced now."""
        factor = self._factor + RATE_RECOVERY * (now - self._since)
        return min(1.0, factor) if self.stated is not None else factor

    def rate(self, now: float) -> float | None:
        """Units per second paced now, or None when nothing is known yet."""
        if self.stated is not None:
            return self.stated * (1 - self.margin) * self.factor(now)
        if self.base is not None:
            return self.base * self.factor(now)
        return None

    def take(self, units: float, now: float) -> None:
        """``units`` start now: the next may start ``units / rate`` after this one's slot.

        A start that comes late (the event loop was busy) keeps its slot, so the next ones
        catch up, back to back, for up to ``CATCH_UP_S`` of lateness; more is forgiven,
        never made up (after an idle spell the pace starts afresh, without a burst).
        """
        rate = self.rate(now)
        if rate is None:
            return
        interval = units / rate
        late = now - self.tat
        self.tat = (self.tat if late <= max(interval, CATCH_UP_S) else now) + interval

    def adjust(self, units: float, now: float) -> None:
        """Correct an earlier start by ``units`` (negative gives budget back)."""
        rate = self.rate(now)
        if rate is not None and self.tat > -math.inf:
            self.tat += units / rate

    def back_off(self, now: float, recent: float | None) -> None:
        """A refusal: lower the pace (told only refusals: just below what ``recent`` was)."""
        if self.stated is None and recent is not None:
            self.base, self._factor = recent, RATE_BACKOFF
        else:
            self._factor = self.factor(now) * RATE_BACKOFF
        self._since = now


class AutoSlots:
    """Calls in flight, bounded by a window that adapts (AIMD) between 1 and ``ceiling``.

    The same interface as ``flowkit.limits.Slots``: FIFO waiters, a coroutine-free fast path.
    The window grows only while it is full (a window nobody fills tells nothing).
    """

    def __init__(self, ceiling: int, start: int = START_CONCURRENCY) -> None:
        self.ceiling = ceiling
        self.window = float(min(start, ceiling))
        self.threshold = math.inf  # slow start below it, one per round above it
        self.capacity = int(self.window)
        self.in_use = 0
        self.peak = 0
        self.low = self.high = self.capacity
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
                self.release()
            elif fut in self.waiters:
                self.waiters.remove(fut)
            raise

    def release(self) -> None:
        if self.in_use <= self.capacity:
            while self.waiters:
                fut = self.waiters.popleft()
                if not fut.done():
                    fut.set_result(None)  # handed over: in_use stays the same
                    return
        self.in_use -= 1

    def grow(self) -> bool:
        """An answer: widen the window if it was full. Returns whether it changed."""
        if self.in_use + len(self.waiters) < self.capacity or self.window >= self.ceiling:
            return False
        step = 1.0 if self.window < self.threshold else 1.0 / self.window
        return self._resize(min(self.ceiling, self.window + step))

    def shrink(self) -> bool:
        """A refusal or a timeout: halve the window. Returns whether it changed."""
        self.threshold = max(1.0, self.window * CONCURRENCY_BACKOFF)
        return self._resize(self.threshold)

    def _resize(self, window: float) -> bool:
        self.window = window
        capacity = max(1, int(window))
        if capacity == self.capacity:
            return False
        self.capacity = capacity
        self.low, self.high = min(self.low, capacity), max(self.high, capacity)
        while self.in_use < capacity and self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                self.in_use += 1
                self.peak = max(self.peak, self.in_use)
                fut.set_result(None)
        return True


class Adaptive:
    """The learning part of one named limiter: learned paces (``requests`` for rpm,
    ``tokens`` for tpm), a pause after refusals, probing credits, adaptive ``slots``.

    Callers queue in order; only the first waits on the clock, so a lower pace, a pause or
    an answer while probing takes effect at the next start without re-planning the queue.
    """

    def __init__(
        self,
        *,
        rpm: bool,
        tpm: bool,
        ceiling: int | None,
        margin: float,
        clock: Clock,
        sleep: Sleep,
    ) -> None:
        self.requests = Pace(margin) if rpm else None
        self.tokens = Pace(margin) if tpm else None
        self.slots = AutoSlots(ceiling) if ceiling is not None else None
        self._clock, self._sleep = clock, sleep
        self._loop = _running_loop()
        self.resume = -math.inf  # no start before this (Retry-After)
        self.credits = 1  # starts allowed while probing
        self._busy = False  # a caller is at the head of the line
        self._line: deque[asyncio.Future[None]] = deque()  # the callers behind it, in order
        self._changed: asyncio.Future[None] | None = None
        self._backed_off = -math.inf
        self._answers: deque[tuple[float, float]] = deque()  # (when, tokens) of answers
        self.refusals = 0
        self.timeouts = 0
        self.paused_s = 0.0
        self.moves: list[tuple[float, float | None, float | None, int | None]] = []
        self._note(clock())

    # -- admission -----------------------------------------------------------------------

    def now(self) -> float:
        """The limiter's clock."""
        return self._clock()

    @property
    def _paces(self) -> tuple[Pace, ...]:
        return tuple(p for p in (self.requests, self.tokens) if p is not None)

    @property
    def probing(self) -> bool:
        """Whether a learned pace knows nothing yet (starts wait for answers instead)."""
        return any(p.stated is None and p.base is None for p in self._paces)

    async def admit(self, requests: float, tokens: float) -> float:
        """Wait for the right to start ``requests`` calls using ``tokens``; seconds waited."""
        t0 = self._clock()
        waited = await self._turn()
        try:
            now = self._clock()
            while True:
                if self.probing and self.credits <= 0:
                    await self._wait(None)
                else:
                    start = max([self.resume, *(p.tat for p in self._paces)])
                    if start <= now:
                        break
                    await self._wait(start - now)
                waited = True
                now = self._clock()
            for pace, units in ((self.requests, requests), (self.tokens, tokens)):
                if pace is not None and units > 0:
                    pace.take(units, now)
            if self.probing:
                self.credits -= 1
        finally:
            self._next_turn()
        return now - t0 if waited else 0.0

    async def _turn(self) -> bool:
        """Wait for this caller's turn at the head of the line; True if it had to queue."""
        if not self._busy and not self._line:
            self._busy = True
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._next_turn()  # the turn came just as we were cancelled: pass it on
            elif turn in self._line:
                self._line.remove(turn)
            raise
        return True

    def _next_turn(self) -> None:
        while self._line:
            turn = self._line.popleft()
            if not turn.done():
                turn.set_result(None)  # handed over: still busy
                return
        self._busy = False

    async def _wait(self, seconds: float | None) -> None:
        """Sleep ``seconds`` (None: no limit), or less if what the limiter knows changes."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        changed = self._changed
        if seconds is None:
            await changed
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not sleeper.done():
                sleeper.cancel()

    def _wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    def adjust_tokens(self, delta: float) -> None:
        if self.tokens is not None:
            self.tokens.adjust(delta, self._clock())

    def released(self) -> None:
        """A call is over: while probing, its credit comes back."""
        if self.probing:
            self.credits += 1
            self._wake()

    # -- what the provider said --------------------------------------------------------------

    # Each may be called from any thread: a call from off the run's loop is handed to it.

    def _elsewhere(self, fn: Callable[..., None], *args: Any) -> bool:
        """Hand ``fn(*args)`` to the run's loop if called from another thread; True if so."""
        loop = self._loop
        if loop is None or _running_loop() is loop:
            return False
        if not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)
        return True

    def answered(
        self, requests: Quota | None = None, tokens: Quota | None = None, used: float = 0.0
    ) -> None:
        """A call was answered (``used`` tokens), with the limits the provider stated on the
        answer (``requests``, ``tokens``), if any."""
        if self._elsewhere(self.answered, requests, tokens, used):
            return
        now = self._clock()
        self._answers.append((now, used))
        while self._answers[0][0] < now - PROBE_WINDOW_S:
            self._answers.popleft()
        self._told(requests, tokens, now)
        if self.probing:
            self.credits += 1  # slow start: with its released slot, each answer lets two go
        if self.slots is not None:
            self.slots.grow()
        self._note(now)
        self._wake()

    def refused(
        self,
        retry_after_s: float | None = None,
        requests: Quota | None = None,
        tokens: Quota | None = None,
        sent_at: float | None = None,
    ) -> None:
        """The provider refused a call for its rate limits (e.g. HTTP 429), asking to wait
        ``retry_after_s``; ``sent_at`` (this limiter's clock): when the call started."""
        if self._elsewhere(self.refused, retry_after_s, requests, tokens, sent_at):
            return
        now = self._clock()
        self.refusals += 1
        self._told(requests, tokens, now)
        if retry_after_s:
            self._pause(now, retry_after_s)
        if self._new_round(now, sent_at):
            recent_calls, recent_tokens = self._recent(now)
            if self.requests is not None:
                self.requests.back_off(now, recent_calls)
            if self.tokens is not None:
                self.tokens.back_off(now, recent_tokens)
            if self.slots is not None:
                self.slots.shrink()
        self._note(now)
        self._wake()

    def timed_out(self, sent_at: float | None = None) -> None:
        """A call got no answer in time: the provider is overloaded; fewer calls at once."""
        if self._elsewhere(self.timed_out, sent_at):
            return
        now = self._clock()
        self.timeouts += 1
        if self.slots is not None and self._new_round(now, sent_at):
            self.slots.shrink()
            self._note(now)

    def _told(self, requests: Quota | None, tokens: Quota | None, now: float) -> None:
        for pace, quota in ((self.requests, requests), (self.tokens, tokens)):
            if pace is None or quota is None:
                continue
            if quota.rate is not None:
                pace.stated = quota.rate
            if quota.remaining is not None and quota.remaining < 1 and quota.reset_s:
                # None left: wait until one unit is back (a provider refilling at its rate).
                missing = max((quota.limit or 1) - quota.remaining, 1.0)
                self._pause(now, quota.reset_s / missing)

    def _pause(self, now: float, seconds: float) -> None:
        until = now + seconds
        if until > self.resume:
            self.paused_s += until - max(now, self.resume)
            self.resume = until

    def _new_round(self, now: float, sent_at: float | None) -> bool:
        """Whether a refusal starts a new round of back-off: the refused call started after
        the last back-off (else it was sent at the old pace and says nothing new)."""
        if sent_at is not None and sent_at <= self._backed_off:
            return False
        if sent_at is None and now - self._backed_off < HOLDOFF_S:
            return False
        self._backed_off = now
        return True

    def _recent(self, now: float) -> tuple[float | None, float | None]:
        """Calls and tokens answered per second lately (None before any answer)."""
        answers = [(t, used) for t, used in self._answers if t >= now - PROBE_WINDOW_S]
        if not answers:
            return None, None
        span = max(now - answers[0][0], 1.0)
        return len(answers) / span, sum(u for _, u in answers) / span

    # -- what it learned ----------------------------------------------------------------------

    def _note(self, now: float) -> None:
        """Keep a point of how the paces and concurrency moved, when they moved."""
        point = (
            now,
            self.per_minute(self.requests, now),
            self.per_minute(self.tokens, now),
            self.slots.capacity if self.slots is not None else None,
        )
        if self.moves and all(
            _close(a, b) for a, b in zip(self.moves[-1][1:], point[1:], strict=True)
        ):
            return
        if len(self.moves) >= MAX_MOVES:
            self.moves = self.moves[::2]  # thin out evenly
        self.moves.append(point)

    def learned(self, learns: tuple[str, ...], since: float | None) -> dict[str, Any]:
        """What it learned, as ``LimiterStats`` fields; times from ``since`` (first start)."""
        now, slots = self._clock(), self.slots
        since = since if since is not None else now
        fields: dict[str, Any] = {
            "learns": learns,
            "concurrency": slots.capacity if slots is not None else None,
            "concurrency_range": (slots.low, slots.high) if slots is not None else None,
            "refused": self.refusals,
            "timeouts": self.timeouts,
            "paused_s": self.paused_s,
            "moves": [(max(0.0, t - since), *rest) for t, *rest in self.moves],
        }
        for unit, pace in (("rpm", self.requests), ("tpm", self.tokens)):
            if pace is not None:
                fields[unit] = pace.stated * 60 if pace.stated is not None else None
                fields[f"paced_{unit}"] = self.per_minute(pace, now)
        return fields

    @staticmethod
    def per_minute(pace: Pace | None, now: float) -> float | None:
        rate = pace.rate(now) if pace is not None else None
        return rate * 60 if rate is not None else None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 0.01 * max(abs(a), abs(b))
