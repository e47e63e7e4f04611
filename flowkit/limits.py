"""Named limits shared by every node that draws on them: ``Limit`` (what a user asks for),
``NamedLimiter`` (its run-time form: ``Slots``, a FIFO counting semaphore whose uncontended
acquire costs no coroutine, and ``flowkit.pacing``'s pacers, with its own meter) and
``Limiters`` (a run's set). Parts of a limit set to ``"auto"`` are
learned from what the provider says (``flowkit.adaptive``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from flowkit.adaptive import AUTO, AUTO_CEILING, Adaptive, AutoSlots, Quota
from flowkit.errors import ConfigError
from flowkit.limitstats import LimiterStats
from flowkit.pacing import Clock, RateLimiter, Sleep

if TYPE_CHECKING:
    from flowkit.budgets import Budget

__all__ = [
    "Limit",
    "LimiterStats",
    "Quota",
]

DEFAULT_MARGIN = 0.02
"""A fixed or learned rpm is paced this share below the rate: a provider that counts over a
sliding window then never sees one call too many when network jitter bunches two starts."""

RATE_WINDOW = 1.0
"""Seconds of use below which an unpaced limiter reports no achieved rate."""


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

    ``max_calls``, ``max_tokens`` and ``max_cost`` are a budget with a hard stop: once the
    calls started, the tokens or the cost charged (``charge``, e.g. by an LLM client from its
    price table) reach one of them, no new call is admitted; calls in flight finish and the
    run ends with the status "budget".
    """

    max_concurrency: int | Literal["auto"] | None = None
    rpm: float | Literal["auto"] | None = None
    tpm: float | Literal["auto"] | None = None
    burst: int = 1
    max_calls: int | None = None
    max_tokens: float | None = None
    max_cost: float | None = None
    margin: float = DEFAULT_MARGIN
    adaptive: bool = False

    @property
    def budgeted(self) -> bool:
        """Whether it sets a budget (max_calls, max_tokens or max_cost)."""
        return not (self.max_calls is None and self.max_tokens is None and self.max_cost is None)

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency != AUTO:
            check_limit(self.max_concurrency, "Limit.max_concurrency (or 'auto')")
        if self.rpm is not None and self.rpm != AUTO:
            _check_rate(self.rpm, "Limit.rpm (or 'auto')")
        if self.tpm is not None and self.tpm != AUTO:
            _check_rate(self.tpm, "Limit.tpm (or 'auto')")
        check_limit(self.burst, "Limit.burst")
        if self.max_calls is not None:
            check_limit(self.max_calls, "Limit.max_calls")
        for name in ("max_tokens", "max_cost"):
            if getattr(self, name) is not None:
                _check_rate(getattr(self, name), f"Limit.{name}")
        margin = self.margin
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < 1:
            raise ConfigError(f"Limit.margin must be a share from 0 to below 1, got {margin!r}")
        if self.adaptive and self.max_concurrency is None:
            raise ConfigError(
                "Limit(adaptive=True) adapts calls in flight below a ceiling: give "
                "max_concurrency=N, or max_concurrency='auto' for up to "
                f"{AUTO_CEILING}"
            )
        unlimited = self.max_concurrency is None and self.rpm is None and self.tpm is None
        if unlimited and not self.budgeted:
            raise ConfigError(
                "Limit needs at least one of max_concurrency, rpm, tpm, max_calls, max_tokens "
                "or max_cost"
            )

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
        budgets: tuple[Budget, ...] = (),
    ) -> None:
        self.name = name
        self.limit = limit
        self.budgets = budgets
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
        a call that may start (its adaptive window counts calls at the provider).
        Raises ``BudgetStop`` when one of its budgets is spent (before or after waiting)."""
        for budget in self.budgets:
            budget.check()
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
            for budget in self.budgets:  # spent while this call waited: it does not start
                budget.check()
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
