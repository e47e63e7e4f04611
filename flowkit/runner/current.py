"""The exec call in progress, as code inside exec sees it: named limiters, waits and usage,
recorded for the node, item and call that are running (context variables the runner sets).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from flowkit.limits import NamedLimiter, Quota

if TYPE_CHECKING:
    from flowkit.runner.items import NodeRun


class Limiters(Protocol):
    """The run's named limiters, as code inside exec may take them."""

    def defines(self, name: str) -> bool: ...

    def limiter(self, name: str, user: str) -> NamedLimiter: ...


current_run: ContextVar[Limiters | None] = ContextVar("flowkit_run", default=None)
current_node: ContextVar[tuple[NodeRun, str] | None] = ContextVar("flowkit_node", default=None)
current_call: ContextVar[tuple[int, int]] = ContextVar("flowkit_call", default=(-1, -1))
"""(item index, call id) of the exec call in progress; set only when the run is observed."""


def current_limiter(name: str) -> LimiterHandle | None:
    """The run's named limiter ``name`` for code inside exec, or None outside a run or when
    the runner defines no such limiter. Clients (e.g. an LLM client) acquire it per call;
    time spent waiting for it counts as waiting, not running, in the run's figures."""
    run = current_run.get()
    if run is None or not run.defines(name):
        return None
    node = current_node.get()
    owner = node[0].name if node is not None else "current_limiter"
    lim = run.limiter(name, owner)
    if node is not None:
        lim.used_by(owner, "exec")
    return LimiterHandle(lim)


class LimiterHandle:
    """A named limiter as code inside exec takes it: the same calls as ``NamedLimiter``,
    with the wait recorded for the running node, item and call (stats, events, report).

    ``answered``, ``refused`` and ``timed_out`` tell a limit that learns (``"auto"`` parts)
    what the provider said about the call this handle last acquired; they do nothing for a
    fixed limit and may be called from any thread (e.g. by a sync exec on worker threads,
    with a handle taken in prep)."""

    __slots__ = ("_lim", "_sent", "limit", "name")

    def __init__(self, lim: NamedLimiter) -> None:
        self._lim, self.name, self.limit = lim, lim.name, lim.limit
        self._sent: float | None = None

    async def acquire(self, requests: int = 1, tokens: float = 0.0) -> float:
        """Wait for the limiter (see ``NamedLimiter.acquire``); returns the seconds waited."""
        node = current_node.get()
        if node is None:
            waited = await self._lim.acquire(requests, tokens)
        else:
            nr, path = node
            nr.begin_wait()
            try:
                waited = await self._lim.acquire(requests, tokens)
            finally:
                nr.end_wait()
            if waited > 0:
                ended = time.monotonic()
                index, call = current_call.get()
                what = f"limiter {self.name}"
                nr.waited(path, index, call, what, ended - waited, ended, self.name)
        if self._lim.auto is not None:
            self._sent = self._lim.auto.now()
        return waited

    def release(self) -> None:
        self._lim.release()

    def adjust_tokens(self, delta: float) -> None:
        """Correct the token budget once a call's real usage is known."""
        self._lim.adjust_tokens(delta)

    def answered(
        self, requests: Quota | None = None, tokens: Quota | None = None, *, used: float = 0.0
    ) -> None:
        """The call was answered, using ``used`` tokens, with the limits the provider stated
        on the answer (e.g. from its rate-limit headers), if any."""
        if self._lim.auto is not None:
            self._lim.auto.answered(requests, tokens, used)

    def refused(
        self,
        retry_after_s: float | None = None,
        *,
        requests: Quota | None = None,
        tokens: Quota | None = None,
    ) -> None:
        """The provider refused the call for its rate limits (e.g. HTTP 429), asking to wait
        ``retry_after_s`` (e.g. its Retry-After header)."""
        if self._lim.auto is not None:
            self._lim.auto.refused(retry_after_s, requests, tokens, self._sent)

    def timed_out(self) -> None:
        """The call got no answer in time."""
        if self._lim.auto is not None:
            self._lim.auto.timed_out(self._sent)

    def __getattr__(self, name: str) -> Any:
        # Everything else (slots, requests, stats(), ...) is the limiter's own.
        return getattr(self._lim, name)


@contextlib.contextmanager
def waiting(what: str) -> Iterator[None]:
    """Mark time inside exec spent waiting (for a limiter, a retry's backoff, a queue), so
    the run counts it as waiting, not running: in-flight counts, the report's lanes and
    speedup leave it out and its timeline draws it as a wait. Does nothing outside a run."""
    node = current_node.get()
    if node is None:
        yield
        return
    nr, path = node
    nr.begin_wait()
    t0 = time.monotonic()
    try:
        yield
    finally:
        nr.end_wait()
        ended = time.monotonic()
        if ended > t0:
            index, call = current_call.get()
            nr.waited(path, index, call, what, t0, ended)


def record_usage(**amounts: float) -> None:
    """Add amounts (tokens, latency, cost...) to the running node's stats and emit a
    ``Usage`` event; does nothing outside a run."""
    node = current_node.get()
    if node is not None:
        node[0].used(node[1], amounts)
