"""The exec call in progress, as code inside exec sees it: named limiters, waits, threads,
usage and operations, recorded for the node, item and call that are running (context
variables the runner sets). Work in a thread is counted here too, for exec code
(``to_thread``) and for thread nodes (``CountedThreads``): waiting for a thread, or for a CPU,
is not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from flowkit.events import Operation
from flowkit.executors.base import Outcome, call_with_retry_index
from flowkit.limits import NamedLimiter, Quota

if TYPE_CHECKING:
    from flowkit.runner.nodes import NodeRun

T = TypeVar("T")
COMPUTING = 0.2
"""A call in a thread whose CPU time is at least this share of its time there computes (one
blocked on I/O uses next to none)."""


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


async def to_thread(
    fn: Callable[..., T], /, *args: Any, cpu_bound: bool = False, **kwargs: Any
) -> T:
    """``fn(*args, **kwargs)`` on the run's thread pool, from code inside exec, as
    ``asyncio.to_thread`` does, but counted honestly: the time it waits for a free thread is
    waiting ("thread pool"), not running. With ``cpu_bound`` (work that computes rather than
    waits on I/O), the part of its time in the thread that the thread was not on a CPU (the
    GIL, other threads, too few cores) is waiting too ("CPU"), so a CPU-bound node never
    shows more running than the cores it had. Outside a run it is ``asyncio.to_thread``."""
    node = current_node.get()
    if node is None:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))
    nr, path = node
    return await in_thread(nr, path, functools.partial(fn, *args, **kwargs), cpu_bound)


async def in_thread(nr: NodeRun, path: str, fn: Callable[[], T], cpu_bound: bool) -> T:
    """``fn()`` on the run's thread pool for a call of ``nr``'s node at ``path``: waiting for
    a thread, and (``cpu_bound``) for a CPU while in one, are recorded as waits."""
    index, call = current_call.get()
    loop = asyncio.get_running_loop()
    begun: list[float] = []

    def work() -> tuple[T, float, float, float]:
        started = time.monotonic()
        begun.append(started)
        loop.call_soon_threadsafe(nr.end_wait)  # it runs: in flight again
        cpu = time.thread_time()
        result = fn()
        return result, time.thread_time() - cpu, started, time.monotonic()

    queued = time.monotonic()
    nr.begin_wait()
    try:
        result, cpu, started, ended = await loop.run_in_executor(nr.threads(), work)
    except BaseException:
        if not begun:  # cancelled or failed before a thread took it: not in flight
            nr.end_wait()
        raise
    back = time.monotonic()
    stats = nr.stats
    stats.cpu_s += cpu
    idle = (ended - started) - cpu
    if not cpu_bound and cpu >= COMPUTING * (ended - started):
        stats.off_cpu_s += max(0.0, idle)  # it computed, yet was off the CPU: counted running
    if started > queued:
        nr.waited(path, index, call, "thread pool", queued, started)
    if cpu_bound and idle > 0:
        nr.waited(path, index, call, "CPU (GIL, other threads)", ended - idle, ended)
    if back > ended:  # done in its thread, waiting for the event loop to take the result
        nr.waited(path, index, call, "event loop", ended, back)
    return result


class CountedThreads:
    """A node on the run's thread pool (``executor="thread"``), its calls counted as
    ``in_thread`` counts them: a wait for a thread is waiting; with the node's
    ``cpu_bound``, so is time in a thread off the CPU."""

    __slots__ = ("cpu_bound", "fn", "nr", "path")

    chunked = False
    awaits = True

    def __init__(self, nr: NodeRun, node: Any, path: str) -> None:
        self.nr, self.path, self.fn = nr, path, node.exec
        self.cpu_bound = nr.plan.cpu_bound

    def call(self, item: Any) -> Awaitable[Any]:
        return in_thread(self.nr, self.path, functools.partial(self.fn, item), self.cpu_bound)

    def retry(self, item: Any, attempt: int) -> Awaitable[Any]:
        work = functools.partial(call_with_retry_index, self.fn, item, attempt)
        return in_thread(self.nr, self.path, work, self.cpu_bound)

    async def run(self, items: Sequence[Any], attempts: Sequence[int] | None) -> list[Outcome]:
        raise TypeError("a thread node takes its items one call at a time")


def record_usage(**amounts: float) -> None:
    """Add amounts (tokens, latency, cost...) to the running node's stats and emit a
    ``Usage`` event; does nothing outside a run."""
    node = current_node.get()
    if node is not None:
        node[0].used(node[1], amounts)


@contextlib.contextmanager
def operation(name: str, **attributes: str | int | float | bool) -> Iterator[dict[str, Any]]:
    """Mark a step inside exec (an LLM request, a query) for the run's observers: one
    ``Operation`` event with its name, start, end, outcome and ``attributes``, which a trace
    shows as a child of the exec call. Add to the yielded dict what becomes known on the way
    (the tokens of a reply); a step that raises gets ``error.type``. Costs next to nothing
    when nobody observes the run; does nothing outside one."""
    node = current_node.get()
    if node is None or node[0].emit is None:
        yield attributes
        return
    nr, path = node
    started = time.monotonic()
    ok = False
    try:
        yield attributes
        ok = True
    except BaseException as exc:
        attributes.setdefault("error.type", type(exc).__name__)
        raise
    finally:
        emit = nr.emit
        if emit is not None:
            index, call = current_call.get()
            emit(
                Operation(
                    time.monotonic(),
                    nr.run_id,
                    path,
                    nr.name,
                    index,
                    call,
                    name,
                    started,
                    ok,
                    dict(attributes),
                )
            )
