"""Each node of a run: its ``Plan``, computed before the run starts, and its ``NodeRun``.

The runner's checked ``Settings`` and every node's ``Plan`` (executor, limit, workers, retry,
failure policy, checkpointing) are frozen data: nothing changes them once the run has
started. A ``NodeRun`` is the run-time state built from a plan (slot counter, named limiters,
executor, ``NodeStats``), the one place the node's counts change; the item path, failures,
checkpoints and code inside exec work on it, never on the whole run. Every copy of a node (a
flow copies its nodes per pass, a batch flow per sub-flow) shares its node's plan and state.
"""

from __future__ import annotations

import asyncio
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowkit.errors import ConfigError, FlowkitWarning, NotImplementedExecError
from flowkit.events import INSTANT, CallEnded, CallRetried, CallStarted, Subscriber, Usage, Waited
from flowkit.executors.base import Binding, Executor, NoExec
from flowkit.executors.batch import MicroBatcher
from flowkit.executors.thread import ThreadExecutor
from flowkit.limits import Limit, NamedLimiter, Slots, check_limit
from flowkit.node import (
    EXECUTORS,
    AsyncNode,
    AsyncParallelBatchNode,
    BaseNode,
    BatchNode,
    CachePolicy,
    Node,
    defines,
    node_options,
)
from flowkit.pauses import own_time
from flowkit.results import Counts, ErrorRecord, NodeStats
from flowkit.retry import Retry
from flowkit.runner.current import CountedThreads

if TYPE_CHECKING:
    from concurrent.futures import Executor as ThreadPool

    from flowkit.runner.tasks import TaskGroup

DEFAULT_PARALLEL_CAP = 1000
"""Items or sub-flows in flight for a parallel node or flow that sets no limit."""
UNLIMITED = sys.maxsize


@dataclass(frozen=True)
class Settings:
    """A runner's settings, checked once (see ``Runner`` for what each means)."""

    node_limits: Mapping[str, int] = field(default_factory=dict)
    named_limits: Mapping[str, Limit] = field(default_factory=dict)
    executors: Mapping[str, Executor] = field(default_factory=dict)
    thread_workers: int = 1
    process_workers: int = 1
    start_method: str | None = None
    ray_address: str | None = None
    max_steps: int | None = None
    store: str | Path | None = None
    run_id: str | None = None
    resume: bool = False
    skip_failed: bool = False
    config: Mapping[str, Any] = field(default_factory=dict)
    max_rss_mb: float | None = None
    timeouts: Mapping[str, float] = field(default_factory=dict)
    cache: str | Path | None = None
    budget: Limit | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def __post_init__(self) -> None:
        for name in self.executors:
            if name in EXECUTORS:
                raise ConfigError(
                    f"Runner executors: {name!r} is a built-in executor; give yours another name"
                )
        if self.max_rss_mb is not None and (
            not isinstance(self.max_rss_mb, int | float)
            or isinstance(self.max_rss_mb, bool)
            or self.max_rss_mb <= 0
        ):
            raise ConfigError(
                f"Runner max_rss_mb must be a positive number, got {self.max_rss_mb!r}"
            )

    def executor_names(self) -> str:
        return ", ".join([*EXECUTORS, *self.executors])


@dataclass(frozen=True, slots=True)
class Plan:
    """How one node runs in a run, read once from its options.

    ``limit`` is its max_concurrency in this run (None: none); ``capacity`` the exec calls in
    flight at most (the limit, else its executor's size); ``workers`` the items of one batch
    in flight at most. ``batch_size`` is set when it micro-batches (``exec_batch``).
    ``checkpoint`` says whether its results go to the run's store (one that has no exec has
    nothing to store). ``timeout`` bounds each try of exec (seconds); ``cache`` is how its
    results are kept in the runner's cache (None: not at all); ``post_item`` names the
    hook called as each item of a batch lands.
    """

    name: str
    executor: str
    is_async: bool
    batch: bool
    limit: int | None
    capacity: int
    workers: int
    uses: tuple[str, ...]
    retry: Retry | None
    on_error: str
    max_errors: int | None
    chunk_size: int | None
    checkpoint: bool
    skip_exec: bool
    batch_size: int | None
    batch_wait: float
    cpu_bound: bool = False
    timeout: float | None = None
    cache: CachePolicy | None = None
    post_item: str | None = None


def make_plan(node: BaseNode, settings: Settings, size_of: Callable[[str], int]) -> Plan:
    """``node``'s plan; ``size_of(executor)`` is how many calls that executor runs at once.
    Bad options are refused here, before any work starts."""
    cls = type(node)
    name = node.name
    options = node_options(node)
    executor = options.executor or "async"
    if executor not in EXECUTORS and executor not in settings.executors:
        raise ConfigError(
            f"{name}: unknown executor {executor!r}; choose one of {settings.executor_names()}, "
            f"or pass Runner(executors={{{executor!r}: ...}})"
        )
    is_async = isinstance(node, AsyncNode)
    batched = defines(node, "exec_batch") or defines(node, "exec_batch_async")
    on_loop = executor == "async"
    if not on_loop and not overrides(cls, "exec") and not batched:
        raise NotImplementedExecError(
            f"{name}: executor={executor!r} runs the node's sync exec(), which "
            f"{cls.__name__} does not define; implement exec(self, item)"
        )
    if batched and not on_loop and not defines(node, "exec_batch"):
        raise NotImplementedExecError(
            f"{name}: executor={executor!r} runs the node's sync exec_batch(), "
            f"which {cls.__name__} does not define; implement exec_batch(self, items)"
        )
    if on_loop and is_async:
        warn_unused_sync_hooks(cls, name)
    limit = options.limit(name, settings.node_limits)
    if limit is not None:
        limit = check_limit(limit, f"{name}: max_concurrency")
    batch = isinstance(node, BatchNode)
    if on_loop:
        pool = DEFAULT_PARALLEL_CAP if isinstance(node, AsyncParallelBatchNode) else 1
        capacity = limit or UNLIMITED
    else:
        pool = size_of(executor)
        capacity = limit or pool
    workers = (limit or pool) if batch else 1
    batch_size: int | None = None
    batch_wait = 0.0
    if batched:
        batch_size = check_limit(node.batch_size, f"{name}: batch_size")
        wait_ms = node.batch_wait_ms
        if isinstance(wait_ms, bool) or not isinstance(wait_ms, int | float) or wait_ms < 0:
            raise ConfigError(f"{name}: batch_wait_ms must be a number >= 0, got {wait_ms!r}")
        batch_wait = wait_ms / 1000
        per_call = limit or (pool if not on_loop else DEFAULT_PARALLEL_CAP)
        workers = min(DEFAULT_PARALLEL_CAP, batch_size * per_call)
    if options.retry is not None:
        retry: Retry | None = options.retry
    else:
        attempts = getattr(node, "max_retries", 1)
        retry = Retry.fixed(attempts, getattr(node, "wait", 0)) if attempts > 1 else None
    skip_exec = isinstance(node, Node) and getattr(node, "max_retries", 1) < 1
    if skip_exec:
        warnings.warn(
            f"{name}: max_retries={node.max_retries} leaves no try, so exec is never "  # type: ignore[attr-defined]
            "called and every result is None (as in PocketFlow); use max_retries=1",
            FlowkitWarning,
            stacklevel=2,
        )
    has_exec = batched or overrides(cls, "exec_async" if on_loop and is_async else "exec")
    timeout = settings.timeouts.get(name, options.timeout)
    chunk_size = options.chunk_size
    if timeout is not None:
        from flowkit.runner.timeouts import refuse_unstoppable

        if on_loop and has_exec and not skip_exec:
            refuse_unstoppable(name, cls, batched, is_async, defines(node, "exec_batch_async"))
        chunk_size = chunk_size or 1  # one item per trip to a worker: a timeout per item
    post_item = None
    if batch and is_async and overrides(cls, "post_item_async"):
        post_item = "post_item_async"
    elif batch and defines(node, "post_item"):
        post_item = "post_item"
    return Plan(
        name=name,
        executor=executor,
        is_async=is_async,
        batch=batch,
        limit=limit,
        capacity=capacity,
        workers=workers,
        uses=tuple(sorted(set(options.uses))),
        retry=retry,
        on_error=options.on_error,
        max_errors=options.max_errors,
        chunk_size=chunk_size,
        checkpoint=options.checkpoint and has_exec and not skip_exec,
        skip_exec=skip_exec,
        batch_size=batch_size,
        batch_wait=batch_wait,
        cpu_bound=options.cpu_bound,
        timeout=timeout,
        cache=options.cache if settings.cache is not None and has_exec else None,
        post_item=post_item,
    )


def overrides(cls: type, method: str) -> bool:
    """Whether ``cls`` defines its own ``method`` (exec, prep_async, ...)."""
    base = BaseNode if method in ("exec", "post_item") else AsyncNode
    return getattr(cls, method) is not getattr(base, method)


_warned_classes: set[tuple[type, str]] = set()


def warn_unused_sync_hooks(cls: type, name: str) -> None:
    """PocketFlow's async nodes never call sync prep/exec/post; flowkit runs them the same way
    and says once per class that a sync hook defined there is not called."""
    for hook in ("prep", "exec", "post"):
        if (cls, hook) in _warned_classes:
            continue
        if overrides(cls, hook) and not overrides(cls, f"{hook}_async"):
            _warned_classes.add((cls, hook))
            warnings.warn(
                f"{name}: {cls.__name__} is an async node, so its sync {hook}() is never "
                f"called (as in PocketFlow) and {hook}_async() returns None; rename it to "
                f"`async def {hook}_async`, or for exec set executor='thread' to run it",
                FlowkitWarning,
                stacklevel=2,
            )


class NodeRun:
    """One node in one run: its plan, its slot counter and named limiters, its executor and
    its ``NodeStats``. Admission (``try_enter``/``enter``/``leave``), waits, spans, retries
    and usage are recorded here and nowhere else; failures and checkpoints work through it.
    """

    def __init__(
        self,
        plan: Plan,
        executor: Executor,
        limiters: tuple[NamedLimiter, ...],
        stats: NodeStats,
        *,
        emit: Subscriber | None,
        run_id: str,
        call_ids: Iterator[int],
        tasks: Callable[[], TaskGroup],
        sleep: Callable[[float], Awaitable[None]],
        errors: list[ErrorRecord],
        threads: Callable[[], ThreadPool],
    ) -> None:
        self.plan, self.name, self.executor = plan, plan.name, executor
        self.errors = errors
        self.limiters, self.stats = limiters, stats
        self.slots = Slots(plan.capacity)
        self.emit, self.run_id, self.call_ids = emit, run_id, call_ids
        self.calls_left = UNLIMITED
        """Exec calls still to report with ``CallStarted``/``CallEnded`` when observed (the
        observers' ``calls_per_node``); retries are reported whatever it says."""
        self._tasks, self.sleep, self.threads = tasks, sleep, threads
        if plan.timeout is not None:
            from flowkit.runner.timeouts import TimedExecutor

            executor = TimedExecutor(executor, plan.timeout, plan.name, plan.executor)
        self.executor = executor
        self.batcher: MicroBatcher | None = None
        if plan.batch_size is not None:
            self.batcher = MicroBatcher(
                plan.name, plan.batch_size, plan.batch_wait, executor, self, plan.retry, sleep
            )
        self.try_enter = self._fast_enter() if not limiters else _false
        self.leave = self._leaver()

    # -- admission ------------------------------------------------------------------------

    def _fast_enter(self) -> Callable[[], bool]:
        """``try_enter()``: admit a call now if nothing must be waited for (a free slot and
        no named limiter), else False: it must ``enter``. Built once per node and run once
        per item, so it takes the slot inline rather than through ``Slots.try_acquire``:
        the call it saves is a tenth of a no-op item's cost."""
        slots, stats, clock = self.slots, self.stats, time.monotonic
        capacity, waiters = slots.capacity, slots.waiters

        def try_enter() -> bool:
            if slots.in_use >= capacity or waiters:
                return False
            slots.in_use += 1
            stats.in_flight += 1
            if stats.in_flight > stats.peak_in_flight:
                stats.peak_in_flight = stats.in_flight
                stats.peak_at = clock()
            return True

        return try_enter

    def _leaver(self) -> Callable[[], None]:
        """``leave()``: the call is over: out of the in-flight count, limiters and slot given
        back (to a waiting caller, if any)."""
        slots, stats, limiters = self.slots, self.stats, self.limiters
        release, waiters = slots.release, slots.waiters
        if not limiters:

            def leave() -> None:
                stats.in_flight -= 1
                if waiters:
                    release()
                else:
                    slots.in_use -= 1

            return leave

        def leave_all() -> None:
            stats.in_flight -= 1
            for lim in limiters:
                lim.release()
            release()

        return leave_all

    async def enter(self, index: int = -1, requests: int = 1, path: str = "") -> None:
        """Wait for a slot and the named limiters (``requests`` of each), then count the call
        in flight."""
        slots = self.slots
        if not slots.try_acquire():
            t0 = time.monotonic()
            await slots.acquire()
            self.waited(path, index, -1, "node limit", t0, time.monotonic())
        taken: list[NamedLimiter] = []
        try:
            for lim in self.limiters:
                waited = await lim.acquire(requests=requests)
                taken.append(lim)
                if waited > 0:
                    ended = time.monotonic()
                    what = f"limiter {lim.name}"
                    self.waited(path, index, -1, what, ended - waited, ended, lim.name)
        except BaseException:
            for lim in taken:
                lim.release()
            slots.release()
            raise
        self.end_wait()

    def begin_wait(self) -> None:
        """A call in flight starts waiting inside exec: it stops counting as in flight. A
        peak it set within ``INSTANT`` (an exec that begins by waiting; garbage collection
        inside that instant does not count) is taken back."""
        stats = self.stats
        at_peak = stats.in_flight == stats.peak_in_flight
        if at_peak and own_time(stats.peak_at, time.monotonic()) < INSTANT:
            stats.peak_in_flight -= 1
        stats.in_flight -= 1

    def end_wait(self) -> None:
        """A call counts as in flight (again)."""
        stats = self.stats
        stats.in_flight += 1
        if stats.in_flight > stats.peak_in_flight:
            stats.peak_in_flight = stats.in_flight
            stats.peak_at = time.monotonic()

    # -- what happened ----------------------------------------------------------------------

    def counts(self, path: str) -> Counts:
        """The item counts at ``path``."""
        counts = self.stats.paths.get(path)
        if counts is None:
            counts = self.stats.paths[path] = Counts()
        return counts

    def waited(
        self,
        path: str,
        index: int,
        call: int,
        what: str,
        started: float,
        ended: float,
        limiter: str | None = None,
    ) -> None:
        """An item waited from ``started`` to ``ended`` for ``what``."""
        seconds = ended - started
        stats = self.stats
        stats.wait_s += seconds
        if limiter is not None:
            stats.limiter_wait[limiter] = stats.limiter_wait.get(limiter, 0.0) + seconds
        if self.emit is not None:
            self.emit(
                Waited(ended, self.run_id, path, self.name, index, call, what, seconds, limiter)
            )

    def span(self, path: str, index: int, started: float, ended: float, ok: bool) -> None:
        """A call that ran elsewhere (a worker process, a batch) from ``started`` to
        ``ended``, reported once it is over."""
        emit = self.emit
        if emit is not None and self.calls_left > 0:
            self.calls_left -= 1
            call = next(self.call_ids)
            emit(CallStarted(started, self.run_id, path, self.name, index, call))
            emit(CallEnded(ended, self.run_id, path, self.name, index, call, ok))

    def retrying(self, path: str, index: int, attempt: int, wait: float, exc: Exception) -> None:
        """Item ``index`` is tried again after ``wait`` seconds."""
        self.counts(path).retries += 1
        if self.emit is not None:
            error = f"{type(exc).__name__}: {exc}"
            self.emit(
                CallRetried(
                    time.monotonic(), self.run_id, path, self.name, index, attempt, wait, error
                )
            )

    def used(self, path: str, amounts: dict[str, float]) -> None:
        """Code inside exec recorded ``amounts``."""
        usage = self.stats.usage
        for key, value in amounts.items():
            usage[key] = usage.get(key, 0.0) + value
        if self.emit is not None:
            self.emit(Usage(time.monotonic(), self.run_id, path, self.name, amounts))

    # -- the micro-batcher's host (flowkit.executors.batch.BatchHost) ----------------------

    def spans(self, paths: Sequence[str], started: float, ended: float, ok: bool) -> None:
        for path in paths:
            self.span(path, -1, started, ended, ok)

    def retried(self, paths: Sequence[str], attempt: int, wait: float, exc: Exception) -> None:
        """A batch call is retried: one retry for the node, one event per item in it."""
        if paths:
            self.counts(paths[0]).retries += 1
        if self.emit is not None:
            error = f"{type(exc).__name__}: {exc}"
            now = time.monotonic()
            for path in paths:
                self.emit(CallRetried(now, self.run_id, path, self.name, -1, attempt, wait, error))

    def start_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self._tasks().start(coro)

    def call_later(self, delay: float, fn: Callable[[], None]) -> asyncio.Handle:
        return self._tasks().call_later(delay, fn)

    # -- the node's executor ----------------------------------------------------------------

    def bind(self, node: BaseNode, path: str) -> Binding:
        """How this copy of the node runs its exec at ``path``."""
        if self.plan.skip_exec:
            return NoExec()
        if self.batcher is not None:
            return self.batcher.bind(node, path)
        if isinstance(self.executor, ThreadExecutor):
            return CountedThreads(self, node, path)
        return self.executor.bind(node)


def _false() -> bool:
    return False
