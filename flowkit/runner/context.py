"""The run as code inside exec sees it: named limiters, waits and usage, for the node and
item in progress (context variables set by the runner)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from flowkit.events import Event
from flowkit.limits import NamedLimiter

if TYPE_CHECKING:
    from flowkit.runner.plan import Plan
    from flowkit.runner.state import RunState

current_run: ContextVar[RunState | None] = ContextVar("flowkit_current_run", default=None)
current_node: ContextVar[tuple[Plan, str] | None] = ContextVar("flowkit_node", default=None)
current_item: ContextVar[int] = ContextVar("flowkit_item", default=-1)


def current_limiter(name: str) -> LimiterHandle | None:
    """The run's named limiter ``name`` for code inside exec, or None outside a run or when
    the runner defines no such limiter. Clients (e.g. an LLM client) acquire it per call;
    time spent waiting for it counts as waiting, not running, in the run's figures."""
    run = current_run.get()
    if run is None or name not in run.runner.named_limits:
        return None
    node = current_node.get()
    owner = node[0].name if node is not None else "current_limiter"
    lim = run.limiter(name, owner)
    if node is not None:
        lim.used_by(owner, "exec")
    return LimiterHandle(lim)


class LimiterHandle:
    """A named limiter as code inside exec takes it: the same calls as ``NamedLimiter``,
    with the wait recorded for the running node and item (stats, events, report)."""

    __slots__ = ("_lim", "limit", "name")

    def __init__(self, lim: NamedLimiter) -> None:
        self._lim, self.name, self.limit = lim, lim.name, lim.limit

    async def acquire(self, requests: int = 1, tokens: float = 0.0) -> float:
        """Wait for the limiter (see ``NamedLimiter.acquire``); returns the seconds waited."""
        run, node = current_run.get(), current_node.get()
        if run is None or node is None:
            return await self._lim.acquire(requests, tokens)
        plan, path = node
        plan.stats.begin_wait()
        try:
            waited = await self._lim.acquire(requests, tokens)
        finally:
            plan.stats.enter()
        if waited > 0:
            ended = time.monotonic()
            what = f"limiter {self.name}"
            run.waited(plan, path, current_item.get(), what, ended - waited, ended, self.name)
        return waited

    def release(self) -> None:
        self._lim.release()

    def __getattr__(self, name: str) -> Any:
        # Everything else (slots, requests, stats(), ...) is the limiter's own, as it was
        # when current_limiter returned the NamedLimiter itself.
        return getattr(self._lim, name)

    def adjust_tokens(self, delta: float) -> None:
        """Correct the token budget once a call's real usage is known."""
        self._lim.adjust_tokens(delta)


@contextlib.contextmanager
def waiting(what: str) -> Iterator[None]:
    """Mark time inside exec spent waiting (for a limiter, a retry's backoff, a queue), so
    the run counts it as waiting, not running: in-flight counts, the report's lanes and
    speedup leave it out and its timeline draws it as a wait. Does nothing outside a run."""
    run, node = current_run.get(), current_node.get()
    if run is None or node is None:
        yield
        return
    plan, path = node
    stats = plan.stats
    stats.begin_wait()
    t0 = time.monotonic()
    try:
        yield
    finally:
        stats.enter()
        ended = time.monotonic()
        if ended > t0:
            run.waited(plan, path, current_item.get(), what, t0, ended)


def record_usage(**amounts: float) -> None:
    """Add amounts (tokens, latency, cost...) to the running node's stats and emit a
    ``usage`` event; does nothing outside a run."""
    run, node = current_run.get(), current_node.get()
    if run is None or node is None:
        return
    plan, path = node
    usage = plan.stats.usage
    for key, value in amounts.items():
        usage[key] = usage.get(key, 0.0) + value
    if run.emit is not None:
        run.emit(Event("usage", time.monotonic(), run.info.run_id, path, plan.name, data=amounts))
