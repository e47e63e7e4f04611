"""The runner: walks a flow's graph and owns how its work runs.

Nodes say what to do; the runner decides how much runs at once and where: per-node limits
(one counter per node for the whole run), named limiters, executors, retries and failure
policy. Batch items are pulled lazily by a fixed set of worker tasks, so memory follows the
limit, not the item count, and an item that succeeds first time pays for nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import itertools
import os
import sys
import time
import traceback
import uuid
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flowkit.batching import Batcher
from flowkit.errors import BatchInputError as _BatchInputError
from flowkit.errors import (
    ConfigError,
    FlowkitWarning,
    FlowStructureError,
    GraphError,
    NotImplementedExecError,
    TooManyErrorsError,
)
from flowkit.events import INSTANT, Event, EventKind, Observer, Subscriber
from flowkit.executors import (
    NodePayload,
    ProcessExecutor,
    RayExecutor,
    call_with_retry_index,
    cpu_count,
    thread_pool,
)
from flowkit.flow import AsyncFlow, AsyncParallelBatchFlow, BatchFlow, Flow, Parallel
from flowkit.limits import Limit, LimiterStats, NamedLimiter, Slots, check_limit
from flowkit.node import (
    AsyncNode,
    AsyncParallelBatchNode,
    BaseNode,
    BatchNode,
    Node,
    _cur_retry,
    node_options,
    successors_of,
)
from flowkit.retry import Retry
from flowkit.store import ResultCodec, Store, StoreError, StoreWriter, dumps, item_key

DEFAULT_PARALLEL_CAP = 1000
"""Items or sub-flows in flight for a parallel node or flow that sets no limit."""

_UNLIMITED = sys.maxsize
_current_run: ContextVar[_Run | None] = ContextVar("flowkit_current_run", default=None)
_current_node: ContextVar[tuple[_Plan, str] | None] = ContextVar("flowkit_node", default=None)
_current_item: ContextVar[int] = ContextVar("flowkit_item", default=-1)


def current_limiter(name: str) -> LimiterHandle | None:
    """The run's named limiter ``name`` for code inside exec, or None outside a run or when
    the runner defines no such limiter. Clients (e.g. an LLM client) acquire it per call;
    time spent waiting for it counts as waiting, not running, in the run's figures."""
    run = _current_run.get()
    if run is None or name not in run.runner.named_limits:
        return None
    node = _current_node.get()
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
        run, node = _current_run.get(), _current_node.get()
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
            run.waited(plan, path, _current_item.get(), what, ended - waited, ended, self.name)
        return waited

    def release(self) -> None:
        self._lim.release()

    def adjust_tokens(self, delta: float) -> None:
        """Correct the token budget once a call's real usage is known."""
        self._lim.adjust_tokens(delta)


@contextlib.contextmanager
def waiting(what: str) -> Iterator[None]:
    """Mark time inside exec spent waiting (for a limiter, a retry's backoff, a queue), so
    the run counts it as waiting, not running: in-flight counts, the report's lanes and
    speedup leave it out and its timeline draws it as a wait. Does nothing outside a run."""
    run, node = _current_run.get(), _current_node.get()
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
            run.waited(plan, path, _current_item.get(), what, t0, ended)


def record_usage(**amounts: float) -> None:
    """Add amounts (tokens, latency, cost...) to the running node's stats and emit a
    ``usage`` event; does nothing outside a run."""
    run, node = _current_run.get(), _current_node.get()
    if run is None or node is None:
        return
    plan, path = node
    usage = plan.stats.usage
    for key, value in amounts.items():
        usage[key] = usage.get(key, 0.0) + value
    if run.emit is not None:
        run.emit(Event("usage", time.monotonic(), run.info.run_id, path, plan.name, data=amounts))


class ErrorRecord(BaseModel):
    """What remains of an item that failed under ``on_error="collect"``."""

    node: str
    index: int
    error_type: str
    message: str
    traceback: str
    attempts: int


@dataclass
class NodeStats:
    """Counts for one node over a run."""

    name: str
    limit: int | None
    executor: str
    items: int = 0
    failed: int = 0
    retries: int = 0
    peak_in_flight: int = 0
    limiter_wait: dict[str, float] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    wait_s: float = 0.0
    in_flight: int = field(default=0, repr=False)
    peak_at: float = field(default=0.0, repr=False)

    def enter(self) -> None:
        """Count one more exec call in flight."""
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
            self.peak_at = time.monotonic()

    def begin_wait(self) -> None:
        """An exec call in flight starts waiting: it stops counting as in flight. A peak it
        set within ``INSTANT`` (an exec that begins by waiting) is taken back."""
        if self.in_flight == self.peak_in_flight and time.monotonic() - self.peak_at < INSTANT:
            self.peak_in_flight -= 1
        self.in_flight -= 1


@dataclass
class RunInfo:
    """What a run did: its id, timing, per-node counts and collected errors."""

    run_id: str
    started: float
    wall_time: float = 0.0
    nodes: dict[str, NodeStats] = field(default_factory=dict)
    errors: list[ErrorRecord] = field(default_factory=list)
    resumed: int = 0
    memory_guard_engaged: int = 0
    limiters: dict[str, LimiterStats] = field(default_factory=dict)


class Runner:
    """Runs flows with limits, executors, retries and failure isolation.

    ``limits`` maps node names to an int (overriding that node's ``max_concurrency``) and
    limiter names to a ``flowkit.Limit`` (a budget shared by every node that ``uses`` it).
    ``thread_workers`` and ``process_workers`` size the pools (default: min(32, cores + 4)
    threads; one process per core). ``start_method`` picks how worker processes start
    (default "forkserver" on Linux). ``ray_address`` joins a Ray cluster instead of starting
    a local one. ``max_steps`` bounds the nodes one pass of any flow may run. ``on_event``
    receives every ``flowkit.events.Event`` of the run (a callable or several; an
    ``Observer`` also hears the run's start and close).

    With ``store`` (a SQLite file) every finished exec result is checkpointed under the run id
    (``run_id``, or a new one); ``resume=RUN_ID`` reruns a flow reusing every stored result,
    retrying stored failures unless ``skip_failed``. ``max_rss_mb`` stops admitting new items
    while the process's resident memory is above it.

    ``progress`` shows per-node progress on stderr: live bars on a terminal, log lines every
    few seconds elsewhere (default: on only when stderr is a terminal). ``report="DIR"``
    writes ``report.json``, ``report.html`` and ``report.png`` there when the run ends.
    ``detect_blocking`` (seconds, default 0.1; None turns it off) warns once per node whose
    code blocks the event loop longer than that (see ``flowkit.detector``).
    """

    def __init__(
        self,
        *,
        limits: Mapping[str, int | Limit] | None = None,
        thread_workers: int | None = None,
        process_workers: int | None = None,
        start_method: str | None = None,
        ray_address: str | None = None,
        max_steps: int | None = None,
        on_event: Subscriber | Iterable[Subscriber] | None = None,
        store: str | Path | None = None,
        run_id: str | None = None,
        resume: str | None = None,
        skip_failed: bool = False,
        max_rss_mb: float | None = None,
        progress: bool | None = None,
        report: str | Path | None = None,
        detect_blocking: float | None = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.node_limits: dict[str, int] = {}
        self.named_limits: dict[str, Limit] = {}
        for key, value in (limits or {}).items():
            if isinstance(value, Limit):
                self.named_limits[key] = value
            else:
                self.node_limits[key] = check_limit(value, f"Runner limits[{key!r}]")
        cores = cpu_count()
        self.thread_workers = check_limit(
            thread_workers or min(32, cores + 4), "Runner thread_workers"
        )
        self.process_workers = check_limit(process_workers or cores, "Runner process_workers")
        self.start_method = start_method
        self.ray_address = ray_address
        self.max_steps = None if max_steps is None else check_limit(max_steps, "max_steps")
        self.clock, self.sleep = clock, sleep
        if resume is not None and store is None:
            raise ConfigError("Runner(resume=...) needs a store: pass store='PATH.db' too")
        if resume is not None and run_id is not None and run_id != resume:
            raise ConfigError(f"Runner got run_id={run_id!r} and resume={resume!r}; give one")
        self.store = store
        self.run_id = resume or run_id
        self.resume = resume is not None
        self.skip_failed = skip_failed
        if max_rss_mb is not None and (
            not isinstance(max_rss_mb, int | float)
            or isinstance(max_rss_mb, bool)
            or max_rss_mb <= 0
        ):
            raise ConfigError(f"Runner max_rss_mb must be a positive number, got {max_rss_mb!r}")
        self.max_rss_mb = max_rss_mb
        self.progress = bool(sys.stderr and sys.stderr.isatty()) if progress is None else progress
        self.report = report
        if detect_blocking and (
            not isinstance(detect_blocking, int | float) or detect_blocking < 0
        ):
            raise ConfigError(
                f"Runner detect_blocking must be a number of seconds or None, got "
                f"{detect_blocking!r}"
            )
        self.detect_blocking = float(detect_blocking) if detect_blocking else None
        if on_event is None:
            self.subscribers: list[Subscriber] = []
        elif callable(on_event):
            self.subscribers = [on_event]
        else:
            self.subscribers = list(on_event)
        self.last_run: RunInfo | None = None

    def run(self, flow: BaseNode, shared: Any = None) -> Any:
        """Run ``flow`` from synchronous code; returns what its post returns."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run_async(flow, shared))
        # Called from sync code on a running loop (a hook running a sub-flow, a notebook):
        # block like PocketFlow does, running the flow on its own loop in a helper thread.
        with ThreadPoolExecutor(1, thread_name_prefix="flowkit-sync-run") as pool:
            return pool.submit(asyncio.run, self.run_async(flow, shared)).result()

    async def run_async(self, flow: BaseNode, shared: Any = None) -> Any:
        """Run ``flow`` (a flow or a single node); returns what its post returns."""
        if not isinstance(flow, BaseNode):
            raise ConfigError(f"Runner can only run nodes and flows, got {type(flow).__name__}")
        run = _Run(self)
        self.last_run = run.info
        run.validate(flow, check_node_limits=True)
        await run.open_store(flow.name)
        subscribers = list(self.subscribers)
        if self.progress:
            from flowkit.progress import Progress

            subscribers.append(Progress())
        if self.report is not None:
            from flowkit.report import ReportWriter

            subscribers.append(ReportWriter(self.report, info=run.info))
        if len(subscribers) > len(self.subscribers):

            def fan_out(event: Event) -> None:
                for sub in subscribers:
                    sub(event)

            run.emit = fan_out
        observers = [sub for sub in subscribers if isinstance(sub, Observer)]
        if self.detect_blocking:
            from flowkit.detector import BlockDetector

            detector = BlockDetector.for_run(
                flow,
                self.detect_blocking,
                start_method=self.start_method,
                emit=run.emit,
                limits=self.node_limits,
            )
            if detector is not None:  # closed first, so its last findings reach the others
                observers.insert(0, detector)
        token = _current_run.set(run)
        for observer in observers:
            observer.start(run.info.run_id)
        ok = False
        try:
            run.event("run_start", flow.name, flow.name)
            result = await run.run_node(flow, shared, "")
            ok = True
            return result
        finally:
            _current_run.reset(token)
            await run.close(ok)
            run.event("run_end", flow.name, flow.name, ok=ok, limiters=run.info.limiters)
            for observer in observers:
                observer.close()


async def run_in_current_or_new(node: BaseNode, shared: Any) -> Any:
    """Run ``node`` inside the run already in progress on this loop, else in a new run."""
    run = _current_run.get()
    if run is not None and run.loop is asyncio.get_running_loop():
        run.validate(node, check_node_limits=False)
        return await run.run_node(node, shared, "")
    return await Runner().run_async(node, shared)


def _batched(node: BaseNode) -> bool:
    return hasattr(node, "exec_batch") or hasattr(node, "exec_batch_async")


def _overrides(cls: type, method: str) -> bool:
    return getattr(cls, method) is not getattr(BaseNode if method == "exec" else AsyncNode, method)


_warned_classes: set[tuple[type, str]] = set()


def _warn_unused_sync_hooks(cls: type, name: str) -> None:
    """PocketFlow's async nodes never call sync prep/exec/post; flowkit runs them the same way
    and says once per class that a sync hook defined there is not called."""
    for hook in ("prep", "exec", "post"):
        if (cls, hook) in _warned_classes:
            continue
        if _overrides(cls, hook) and not _overrides(cls, f"{hook}_async"):
            _warned_classes.add((cls, hook))
            warnings.warn(
                f"{name}: {cls.__name__} is an async node, so its sync {hook}() is never "
                f"called (as in PocketFlow) and {hook}_async() returns None; rename it to "
                f"`async def {hook}_async`, or for exec set executor='thread' to run it",
                FlowkitWarning,
                stacklevel=2,
            )


class _Plan:
    """How one node (and every copy of it) runs in this run; built once per node."""

    __slots__ = (
        "batch",
        "batcher",
        "checkpoint",
        "chunk_size",
        "codec",
        "executor",
        "is_async",
        "limiters",
        "max_errors",
        "name",
        "on_error",
        "path",
        "retry",
        "skip_exec",
        "slots",
        "stats",
        "workers",
    )

    def __init__(self, run: _Run, node: BaseNode) -> None:
        cls = type(node)
        self.name = node.name
        self.is_async = isinstance(node, AsyncNode)
        options = node_options(node)
        executor = options.executor or "async"
        self.executor = executor
        self.batch = isinstance(node, BatchNode)
        self.on_error = options.on_error
        self.max_errors = options.max_errors
        self.chunk_size = options.chunk_size
        if executor != "async" and not _overrides(cls, "exec") and not _batched(node):
            raise NotImplementedExecError(
                f"{self.name}: executor={executor!r} runs the node's sync exec(), which "
                f"{cls.__name__} does not define; implement exec(self, item)"
            )
        if executor == "async" and self.is_async:
            _warn_unused_sync_hooks(cls, self.name)
        limit = run.runner.node_limits.get(self.name, options.max_concurrency)
        if limit is not None:
            limit = check_limit(limit, f"{self.name}: max_concurrency")
        if executor == "async":
            parallel = isinstance(node, AsyncParallelBatchNode)
            pool_size = DEFAULT_PARALLEL_CAP if parallel else 1
        else:
            parallel = True
            pool_size = run.pool_size(executor)
        self.workers = (limit or pool_size) if self.batch and parallel else 1
        self.slots = Slots(limit or (pool_size if executor != "async" else _UNLIMITED))
        self.limiters = tuple(
            run.limiter(name, self.name) for name in sorted(set(options.uses))
        )
        for lim in self.limiters:
            lim.used_by(self.name, "runner")
        if options.retry is not None:
            self.retry: Retry | None = options.retry
        else:
            attempts = getattr(node, "max_retries", 1)
            wait = getattr(node, "wait", 0)
            self.retry = Retry.fixed(attempts, wait) if attempts > 1 else None
        self.skip_exec = isinstance(node, Node) and getattr(node, "max_retries", 1) < 1
        if self.skip_exec:
            warnings.warn(
                f"{self.name}: max_retries={node.max_retries} leaves no try, so exec is never "  # type: ignore[attr-defined]
                "called and every result is None (as in PocketFlow); use max_retries=1",
                FlowkitWarning,
                stacklevel=2,
            )
        self.stats = run.stats_for(self.name, limit, executor)
        self.path = self.name
        self.checkpoint = options.checkpoint
        self.batcher = run.batcher(self, node) if _batched(node) else None
        if self.batcher is not None:
            per_call = limit or (pool_size if executor != "async" else DEFAULT_PARALLEL_CAP)
            self.workers = min(DEFAULT_PARALLEL_CAP, self.batcher.size * per_call)
        method = getattr(cls, "exec_async" if executor == "async" and self.is_async else "exec")
        self.codec = ResultCodec.for_method(self.name, method)


class _Run:
    """State of one run: plans, limiters, pools and counts."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.loop = asyncio.get_running_loop()
        self.info = RunInfo(run_id=runner.run_id or uuid.uuid4().hex[:12], started=time.time())
        self._t0 = time.perf_counter()
        self._plans: dict[int, _Plan] = {}
        self._limiters: dict[str, NamedLimiter] = {}
        self._threads: Any = None
        self._processes: ProcessExecutor | None = None
        self._ray: RayExecutor | None = None
        self.emit: Subscriber | None = self._broadcast if runner.subscribers else None
        self._store: Store | None = None
        self._writer: StoreWriter | None = None
        self._stored: dict[tuple[str, str], tuple[bool, str]] = {}
        self.guard = MemoryGuard(runner.max_rss_mb, self) if runner.max_rss_mb else None
        self._batchers: list[Batcher] = []

    # -- events ---------------------------------------------------------------------------

    def _broadcast(self, event: Event) -> None:
        for sub in self.runner.subscribers:
            sub(event)

    def event(
        self, kind: EventKind, path: str, node: str, index: int = -1, ok: bool = True, **data: Any
    ) -> None:
        """Emit an event now, if anyone listens."""
        if self.emit is not None:
            self.emit(Event(kind, time.monotonic(), self.info.run_id, path, node, index, ok, data))

    # -- set-up ---------------------------------------------------------------------------

    def validate(self, root: BaseNode, *, check_node_limits: bool) -> None:
        """Refuse bad configuration before any work starts."""
        seen: dict[int, BaseNode] = {}
        stack = [root]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen[id(node)] = node
            if isinstance(node, Flow) and isinstance(node.start_node, BaseNode):
                stack.append(node.start_node)
            if isinstance(node, Parallel):
                stack.extend(node.branches)
            stack.extend(n for _, n in successors_of(node))
        names = set()
        for node in seen.values():
            names.add(node.name)
            if isinstance(node, Flow | Parallel):
                check_limit(node.max_concurrency or 1, f"{node.name}: max_concurrency")
            else:
                self.plan(node)
        if check_node_limits:
            unknown = sorted(set(self.runner.node_limits) - names)
            if unknown:
                raise ConfigError(
                    f"Runner limits name unknown node(s) {', '.join(map(repr, unknown))}; "
                    f"nodes in this flow: {', '.join(sorted(names))}. Use a flowkit.Limit "
                    "value for a named limiter"
                )

    def plan(self, node: BaseNode) -> _Plan:
        key = getattr(node, "_fk_id", id(node))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(self, node)
            if plan.executor in ("process", "ray"):
                NodePayload(node)  # refuse an unpicklable node before any work starts
        return plan

    def limiter(self, name: str, user: str) -> NamedLimiter:
        lim = self._limiters.get(name)
        if lim is None:
            spec = self.runner.named_limits.get(name)
            if spec is None:
                known = ", ".join(sorted(self.runner.named_limits)) or "none"
                raise ConfigError(
                    f"{user}: uses limiter {name!r}, which the runner does not define "
                    f"(defined: {known}); pass Runner(limits={{{name!r}: flowkit.Limit(...)}})"
                )
            lim = self._limiters[name] = NamedLimiter(
                name, spec, clock=self.runner.clock, sleep=self.runner.sleep
            )
        return lim

    def batcher(self, plan: _Plan, node: BaseNode) -> Batcher:
        """A micro-batcher for a node that defines exec_batch or exec_batch_async."""
        size = check_limit(getattr(node, "batch_size", 32), f"{plan.name}: batch_size")
        wait_ms = getattr(node, "batch_wait_ms", 5.0)
        if isinstance(wait_ms, bool) or not isinstance(wait_ms, int | float) or wait_ms < 0:
            raise ConfigError(f"{plan.name}: batch_wait_ms must be a number >= 0, got {wait_ms!r}")
        cls = type(node)
        if plan.executor != "async" and not hasattr(cls, "exec_batch"):
            raise NotImplementedExecError(
                f"{plan.name}: executor={plan.executor!r} runs the node's sync exec_batch(), "
                f"which {cls.__name__} does not define; implement exec_batch(self, items)"
            )
        payloads: dict[int, tuple[BaseNode, NodePayload]] = {}

        async def call(target: Any, items: list[Any], queued: list[float]) -> list[Any]:
            called = time.monotonic()
            for since in queued:  # an item waits from joining the queue to its batch's call
                self.waited(plan, plan.path, -1, "batch", since, called)
            await self.take_slot(plan, plan.path, -1)
            try:
                if plan.limiters:
                    await self._acquire_limiters(plan, plan.path, len(items))
                plan.stats.enter()
                started, ok = time.monotonic(), False
                try:
                    if plan.executor == "async":
                        if hasattr(cls, "exec_batch_async"):
                            result = await target.exec_batch_async(items)
                        else:
                            result = target.exec_batch(items)
                    elif plan.executor == "thread":
                        result = await self.loop.run_in_executor(
                            self.threads(), target.exec_batch, items
                        )
                    else:
                        held = payloads.get(id(target))
                        if held is None:
                            held = payloads[id(target)] = (target, NodePayload(target))
                        backend = self.processes() if plan.executor == "process" else self.ray()
                        [(done, result, started, _)] = await backend.run(held[1], items, None)
                        if not done:
                            raise result
                    ok = True
                    return result
                finally:
                    plan.stats.in_flight -= 1
                    if self.emit is not None:
                        ended = time.monotonic()
                        for _ in items:
                            self._item_span(plan.path, plan.name, -1, started, ended, ok)
                    if plan.limiters:
                        _release_all(plan.limiters)
            finally:
                plan.slots.release()

        def next_wait(attempt: int, exc: Exception) -> float | None:
            if plan.retry is None:
                return None
            delay = plan.retry.next_wait(attempt, exc)
            if delay is not None:
                plan.stats.retries += 1
            return delay

        batcher = Batcher(plan.name, size, wait_ms / 1000, call, next_wait, self.runner.sleep)
        self._batchers.append(batcher)
        return batcher

    def stats_for(self, name: str, limit: int | None, executor: str) -> NodeStats:
        stats = self.info.nodes.get(name)
        if stats is None:
            stats = self.info.nodes[name] = NodeStats(name, limit, executor)
        return stats

    def pool_size(self, executor: str) -> int:
        if executor == "thread":
            return self.runner.thread_workers
        if executor == "process":
            return self.runner.process_workers
        return self.ray().size

    def threads(self) -> Any:
        if self._threads is None:
            self._threads = thread_pool(self.runner.thread_workers)
        return self._threads

    def processes(self) -> ProcessExecutor:
        if self._processes is None:
            self._processes = ProcessExecutor(self.runner.process_workers, self.runner.start_method)
        return self._processes

    def ray(self) -> RayExecutor:
        if self._ray is None:
            self._ray = RayExecutor(self.runner.ray_address)
        return self._ray

    async def open_store(self, flow_name: str) -> None:
        if self.runner.store is None:
            return
        self._store = Store(self.runner.store)
        try:
            self._stored = self._store.begin(self.info.run_id, flow_name, resume=self.runner.resume)
            self._writer = await self._store.writer(self.info.run_id)
        except BaseException:
            self._store.close()
            raise

    def checkpoint(self, plan: _Plan, node: BaseNode, path: str) -> _Checkpoint | None:
        if self._writer is None or not plan.checkpoint:
            return None
        return _Checkpoint(self, plan, node, path)

    async def close(self, ok: bool = False) -> None:
        self.info.wall_time = time.perf_counter() - self._t0
        self.info.limiters = {name: lim.stats() for name, lim in sorted(self._limiters.items())}
        if self.guard is not None:
            self.guard.stop()
        for batcher in self._batchers:
            batcher.close()
        if self._store is not None:
            try:
                if self._writer is not None:
                    await self._writer.close()
                self._store.finish(self.info.run_id, "done" if ok else "failed")
            finally:
                self._store.close()
        if self._threads is not None:
            # After a clean run the threads are idle: wait for them, so no stray thread makes
            # a later process pool fall back from fork to forkserver. After a failure or a
            # cancel a thread may be stuck in a blocking call: don't wait for it.
            self._threads.shutdown(wait=ok, cancel_futures=True)
        if self._processes is not None:
            self._processes.close()
        if self._ray is not None:
            self._ray.close()

    # -- walking the graph ----------------------------------------------------------------

    async def run_node(self, node: BaseNode, shared: Any, parent: str) -> Any:
        """Run one node or flow (prep, exec, post); ``parent`` is the enclosing path."""
        path = f"{parent}/{node.name}" if parent else node.name
        if isinstance(node, Flow | Parallel):
            self.event("node_start", path, node.name, role="flow")
            ok = False
            try:
                if isinstance(node, Flow):
                    result = await self._run_flow(node, shared, path)
                else:
                    result = await self._run_parallel(node, shared, path)
                ok = True
                return result
            finally:
                self.event("node_end", path, node.name, ok=ok, role="flow")
        plan = self.plan(node)
        plan.path = path
        if self.emit is not None:
            self.event(
                "node_start",
                path,
                plan.name,
                role="node",
                executor=plan.executor,
                limit=plan.stats.limit,
                batch=plan.batch,
            )
        ok = False
        token = _current_node.set((plan, path))
        try:
            if plan.is_async:
                assert isinstance(node, AsyncNode)
                prep_res = await _hook(node, "prep_async", shared)
                exec_res = await self._exec(plan, node, prep_res, path)
                result = await _hook(node, "post_async", shared, prep_res, exec_res)
            else:
                prep_res = _call_hook(node, "prep", shared)
                exec_res = await self._exec(plan, node, prep_res, path)
                result = _call_hook(node, "post", shared, prep_res, exec_res)
            ok = True
            return result
        finally:
            _current_node.reset(token)
            self.event("node_end", path, plan.name, ok=ok, role="node")

    async def _run_flow(self, flow: Flow, shared: Any, path: str) -> Any:
        is_async = isinstance(flow, AsyncFlow)
        if is_async:
            prep_res = await _hook(flow, "prep_async", shared)
        else:
            prep_res = _call_hook(flow, "prep", shared)
        if isinstance(flow, BatchFlow):
            prep_res = prep_res or []
            source = _items(prep_res, flow, "params dicts")
            workers = 1
            if isinstance(flow, AsyncParallelBatchFlow):
                workers = flow.max_concurrency or DEFAULT_PARALLEL_CAP

            async def one(_: int, params: Any) -> None:
                if not isinstance(params, Mapping):
                    raise _BatchInputError(
                        f"{flow.name}: prep must yield params dicts, got "
                        f"{type(params).__name__} {params!r:.80}"
                    )
                await self._orch(flow, shared, {**flow.params, **params}, path)

            await _drive(source, workers, one)
            exec_res = None
        else:
            exec_res = await self._orch(flow, shared, None, path)
        if is_async:
            return await _hook(flow, "post_async", shared, prep_res, exec_res)
        return _call_hook(flow, "post", shared, prep_res, exec_res)

    async def _orch(self, flow: Flow, shared: Any, params: dict[str, Any] | None, path: str) -> Any:
        curr: BaseNode | None = copy.copy(flow.first_node())
        p = params or {**flow.params}
        max_steps = flow.max_steps or self.runner.max_steps
        last_action = None
        steps = 0
        while curr is not None:
            steps += 1
            if not isinstance(curr, BaseNode):
                raise GraphError(
                    f"{flow.name}: the flow reached {curr!r} ({type(curr).__name__}), which is "
                    f"not a node or flow (after action {last_action!r}); wire a node there"
                )
            if max_steps is not None and steps > max_steps:
                raise FlowStructureError(
                    f"{flow.name}: more than {max_steps} steps (the last action was "
                    f"{last_action!r}); a cycle may never end. Raise max_steps if it is meant "
                    "to run longer"
                )
            curr.set_params(p)
            last_action = await self.run_node(curr, shared, path)
            curr = copy.copy(flow.get_next_node(curr, last_action))
        return last_action

    async def _run_parallel(self, par: Parallel, shared: Any, path: str) -> Any:
        if not isinstance(shared, dict):
            raise ConfigError(f"{par.name}: Parallel needs shared to be a dict")
        prep_res = await _hook(par, "prep_async", shared)
        base = shared
        views: dict[str, dict[str, Any]] = {}

        async def branch(i: int, node: BaseNode) -> None:
            view = dict(base)
            views[par.branch_names[i]] = view
            node = copy.copy(node)
            node.set_params({**par.params})
            await self.run_node(node, view, path)

        await _drive(iter(par.branches), par.max_concurrency or len(par.branches), branch)
        updates = {
            name: {k: v for k, v in view.items() if k not in base or base[k] is not v}
            for name, view in ((n, views[n]) for n in par.branch_names)
        }
        par.join(shared, updates)
        return await _hook(par, "post_async", shared, prep_res, None)

    # -- exec -----------------------------------------------------------------------------

    def _item_span(
        self, path: str, name: str, index: int, started: float, ended: float, ok: bool
    ) -> None:
        assert self.emit is not None
        run_id = self.info.run_id
        self.emit(Event("item_start", started, run_id, path, name, index))
        self.emit(Event("item_end", ended, run_id, path, name, index, ok))

    async def _acquire_limiters(
        self, plan: _Plan, path: str, requests: int = 1, index: int = -1
    ) -> None:
        """Acquire the node's named limiters in name order, recording time spent waiting."""
        taken: list[NamedLimiter] = []
        try:
            for lim in plan.limiters:
                waited = await lim.acquire(requests=requests)
                taken.append(lim)
                if waited > 0:
                    ended = time.monotonic()
                    self.waited(plan, path, index, f"limiter {lim.name}", ended - waited, ended,
                                lim.name)
        except BaseException:
            _release_all(tuple(taken))
            raise

    async def take_slot(self, plan: _Plan, path: str, index: int) -> None:
        """Take one of the node's slots, recording a wait for it as a "node limit" wait."""
        if not plan.slots.try_acquire():
            t0 = time.monotonic()
            await plan.slots.acquire()
            self.waited(plan, path, index, "node limit", t0, time.monotonic())

    def waited(
        self,
        plan: _Plan,
        path: str,
        index: int,
        what: str,
        started: float,
        ended: float,
        limiter: str | None = None,
    ) -> None:
        """Record that an item of ``plan``'s node waited from ``started`` to ``ended``."""
        seconds = ended - started
        stats = plan.stats
        stats.wait_s += seconds
        if limiter is not None:
            stats.limiter_wait[limiter] = stats.limiter_wait.get(limiter, 0.0) + seconds
        if self.emit is not None:
            data: dict[str, Any] = {"what": what, "seconds": seconds}
            if limiter is not None:
                data["limiter"] = limiter
            self.emit(
                Event(
                    "limiter_wait" if limiter is not None else "item_wait",
                    ended,
                    self.info.run_id,
                    path,
                    plan.name,
                    index,
                    True,
                    data,
                )
            )

    async def _exec(self, plan: _Plan, node: BaseNode, prep_res: Any, path: str) -> Any:
        if not plan.batch:
            source = _Source(iter((prep_res,)), None, 1)
        else:
            source = _items(prep_res, node, "items")
        self.event("batch_start", path, plan.name, items=source.size)
        out = await self._map(plan, node, source, plan.workers if plan.batch else 1, path)
        return out if plan.batch else out[0]

    async def _map(
        self, plan: _Plan, node: BaseNode, source: _Source, workers: int, path: str
    ) -> list[Any]:
        """Run exec over every item of ``source`` with at most ``workers`` in flight."""
        if source.size is not None:
            if source.size == 0:
                return []
            workers = min(workers, source.size)
        failures = _Failures(self, plan, node, path)
        if plan.batcher is not None:
            return await self._map_batched(plan, node, source, workers, failures)
        if plan.executor in ("process", "ray"):
            return await self._map_chunked(plan, node, source, workers, failures)
        results: list[Any] = []
        slots, limiters, stats = plan.slots, plan.limiters, plan.stats
        emit, run_id, name = self.emit, self.info.run_id, plan.name
        ck = self.checkpoint(plan, node, path)
        # The checkpoint's methods, bound once: this loop runs once per item.
        key_of = ck.key if ck is not None else None
        restore = ck.restore if ck is not None and ck.stored else None
        save = ck.save if ck is not None else None
        guard = self.guard
        it = source._it
        call: Callable[[Any], Any]
        retry_call: Callable[[Any, int], Awaitable[Any]]
        if plan.executor == "thread":
            loop, pool, fn = self.loop, self.threads(), node.exec

            def call(item: Any) -> Awaitable[Any]:
                return loop.run_in_executor(pool, fn, item)

            def retry_call(item: Any, attempt: int) -> Awaitable[Any]:
                return loop.run_in_executor(pool, call_with_retry_index, fn, item, attempt)

            awaitable = True
        else:
            call = node.exec_async if isinstance(node, AsyncNode) else node.exec
            awaitable = plan.is_async
            retry_call = functools.partial(_retry_here, call, awaitable)
        if plan.skip_exec:
            call = _no_exec
            awaitable = False

        async def lane(_: int) -> None:
            key = ""
            done = 0
            while True:
                done += 1
                if not done & 255:
                    await asyncio.sleep(0)  # let other tasks run even when exec never suspends
                if guard is not None and guard.engaged:
                    await guard.admit()
                if it is not None:
                    try:
                        item = next(it)
                    except StopIteration:
                        return
                else:
                    pulled = await source.take(1)
                    if not pulled:
                        return
                    item = pulled[0]
                index = len(results)
                results.append(None)
                if key_of is not None:
                    key = key_of(item)
                    if restore is not None:
                        stored = restore(key)
                        if stored is not _MISS:
                            results[index] = stored
                            continue
                if emit is not None:
                    _current_item.set(index)
                if not slots.try_acquire():
                    t0 = time.monotonic()
                    await slots.acquire()
                    self.waited(plan, path, index, "node limit", t0, time.monotonic())
                try:
                    if limiters:
                        await self._acquire_limiters(plan, path, 1, index)
                    stats.in_flight += 1
                    if stats.in_flight > stats.peak_in_flight:
                        stats.peak_in_flight = stats.in_flight
                        stats.peak_at = time.monotonic()
                    failed = None
                    if emit is not None:
                        emit(Event("item_start", time.monotonic(), run_id, path, name, index))
                    try:
                        res = call(item)
                        if awaitable:
                            res = await res
                        failed = None
                    except Exception as exc:
                        failed = exc
                    finally:
                        stats.in_flight -= 1
                        if limiters:
                            _release_all(limiters)
                        if emit is not None:
                            emit(
                                Event(
                                    "item_end",
                                    time.monotonic(),
                                    run_id,
                                    path,
                                    name,
                                    index,
                                    failed is None,
                                )
                            )
                finally:
                    slots.release()
                if failed is not None:
                    res = await self._recover_saving(
                        plan, index, item, failed, failures, retry_call, ck, key
                    )
                elif save is not None:
                    save(key, index, res)
                results[index] = res
                stats.items += 1

        await _supervise(workers, lane, ck)
        return results

    async def _map_chunked(
        self, plan: _Plan, node: BaseNode, source: _Source, workers: int, failures: _Failures
    ) -> list[Any]:
        """Like ``_map`` for worker processes and Ray: items travel in adaptive chunks."""
        backend: ProcessExecutor | RayExecutor = (
            self.processes() if plan.executor == "process" else self.ray()
        )
        payload = NodePayload(node)
        results: list[Any] = []
        sizer = _ChunkSizer(plan.chunk_size, source.size, workers)
        slots, limiters, stats, path = plan.slots, plan.limiters, plan.stats, failures.path

        async def retry_call(item: Any, attempt: int) -> Any:
            [(ok, value, _, _)] = await backend.run(payload, [item], [attempt])
            if not ok:
                raise value
            return value

        ck = self.checkpoint(plan, node, failures.path)
        guard = self.guard

        async def lane(_: int) -> None:
            while True:
                if guard is not None and guard.engaged:
                    await guard.admit()
                pulled = await source.take(sizer.next())
                if not pulled:
                    return
                first = len(results)
                results.extend([None] * len(pulled))
                todo = list(range(len(pulled)))
                keys = [""] * len(pulled)
                if ck is not None:
                    todo = []
                    for j, item in enumerate(pulled):
                        keys[j] = ck.key(item)
                        stored = ck.restore(keys[j])
                        if stored is _MISS:
                            todo.append(j)
                        else:
                            results[first + j] = stored
                    if not todo:
                        continue
                chunk = [pulled[j] for j in todo]
                await self.take_slot(plan, path, first)
                try:
                    if limiters:
                        await self._acquire_limiters(plan, path, len(chunk))
                    stats.enter()
                    try:
                        t0 = time.perf_counter()
                        sent = time.monotonic()
                        outcomes = await backend.run(payload, chunk, [0] * len(chunk))
                        sizer.observe(len(chunk), time.perf_counter() - t0)
                    finally:
                        stats.in_flight -= 1
                        if limiters:
                            _release_all(limiters)
                finally:
                    slots.release()
                for j, (ok, value, started, ended) in zip(todo, outcomes, strict=True):
                    index = first + j
                    if started > sent:
                        self.waited(plan, path, index, "worker", sent, started)
                    if self.emit is not None:
                        self._item_span(path, plan.name, index, started, ended, ok)
                    if not ok:
                        value = await self._recover_saving(
                            plan, index, pulled[j], value, failures, retry_call, ck, keys[j]
                        )
                    elif ck is not None:
                        ck.save(keys[j], index, value)
                    results[index] = value
                stats.items += len(chunk)

        await _supervise(workers, lane, ck)
        return results

    async def _map_batched(
        self, plan: _Plan, node: BaseNode, source: _Source, workers: int, failures: _Failures
    ) -> list[Any]:
        """Like ``_map`` for nodes with exec_batch: items go through the node's batcher."""
        batcher = plan.batcher
        assert batcher is not None
        results: list[Any] = []
        ck = self.checkpoint(plan, node, failures.path)
        stats = plan.stats

        async def lane(_: int) -> None:
            while True:
                pulled = await source.take(1)
                if not pulled:
                    return
                item = pulled[0]
                index = len(results)
                results.append(None)
                key = ""
                if ck is not None:
                    key = ck.key(item)
                    stored = ck.restore(key)
                    if stored is not _MISS:
                        results[index] = stored
                        continue
                try:
                    res = await batcher.submit(node, item)
                except Exception as exc:
                    try:
                        res = await self._give_up(plan, index, item, exc, failures, 1)
                    except Exception:
                        if ck is not None:
                            ck.save_failure(key, index, failures)
                        raise
                if ck is not None:
                    ck.save_outcome(key, index, res)
                results[index] = res
                stats.items += 1

        await _supervise(workers, lane, ck)
        return results

    async def _recover_saving(
        self,
        plan: _Plan,
        index: int,
        item: Any,
        exc: Exception,
        failures: _Failures,
        retry_call: Callable[[Any, int], Awaitable[Any]],
        ck: _Checkpoint | None,
        key: str,
    ) -> Any:
        """``_recover``, checkpointing the outcome: a result, or the final error's record."""
        try:
            res = await self._recover(plan, index, item, exc, failures, retry_call)
        except Exception:
            if ck is not None:
                ck.save_failure(key, index, failures)
            raise
        if ck is not None:
            ck.save_outcome(key, index, res)
        return res

    async def _recover(
        self,
        plan: _Plan,
        index: int,
        item: Any,
        exc: Exception,
        failures: _Failures,
        retry_call: Callable[[Any, int], Awaitable[Any]],
    ) -> Any:
        """Retry a failed item per the node's policy, then fall back, then apply on_error."""
        attempt = 1
        policy = plan.retry
        while policy is not None:
            delay = policy.next_wait(attempt, exc)
            if delay is None:
                break
            plan.stats.retries += 1
            self.event(
                "item_retry",
                failures.path,
                plan.name,
                index,
                False,
                attempt=attempt,
                wait=delay,
                error=f"{type(exc).__name__}: {exc}",
            )
            if delay > 0:
                await self.runner.sleep(delay)
            await self.take_slot(plan, failures.path, index)
            try:
                if plan.limiters:
                    await self._acquire_limiters(plan, failures.path, 1, index)
                plan.stats.enter()
                t0 = time.monotonic()
                ok = False
                try:
                    result = await retry_call(item, attempt)
                    ok = True
                    return result
                except Exception as again:
                    exc = again
                finally:
                    plan.stats.in_flight -= 1
                    if self.emit is not None:
                        self._item_span(failures.path, plan.name, index, t0, time.monotonic(), ok)
                    if plan.limiters:
                        _release_all(plan.limiters)
            finally:
                plan.slots.release()
            attempt += 1
        return await self._give_up(plan, index, item, exc, failures, attempt)

    async def _give_up(
        self, plan: _Plan, index: int, item: Any, exc: Exception, failures: _Failures, attempt: int
    ) -> Any:
        """No tries left: the node's fallback, else its on_error policy."""
        node = failures.node
        token = _cur_retry.set(attempt - 1)
        try:
            if plan.is_async:
                return await node.exec_fallback_async(item, exc)  # type: ignore[attr-defined]
            if isinstance(node, Node):
                return node.exec_fallback(item, exc)
            raise exc
        except Exception as final:
            return failures.handle(index, final, attempt)
        finally:
            _cur_retry.reset(token)


# -- helpers ----------------------------------------------------------------------------------


class _Failures:
    """Applies a node's on_error policy to items of one batch that failed for good."""

    __slots__ = ("count", "last_record", "node", "path", "plan", "run")

    def __init__(self, run: _Run, plan: _Plan, node: BaseNode, path: str) -> None:
        self.run, self.plan, self.node, self.path = run, plan, node, path
        self.count = 0
        self.last_record: ErrorRecord | None = None

    def record(self, index: int, exc: BaseException, attempts: int) -> ErrorRecord:
        return ErrorRecord(
            node=self.plan.name,
            index=index,
            error_type=type(exc).__name__,
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
            attempts=attempts,
        )

    def handle(self, index: int, exc: Exception, attempts: int) -> ErrorRecord:
        plan = self.plan
        plan.stats.failed += 1
        self.run.event(
            "item_error",
            self.path,
            plan.name,
            index,
            False,
            attempts=attempts,
            error_type=type(exc).__name__,
            message=str(exc),
            policy=plan.on_error,
        )
        record = self.last_record = self.record(index, exc, attempts)
        where = f"flowkit: {plan.name} failed on item {index} after {attempts} attempt(s)"
        if plan.on_error == "raise":
            if where not in getattr(exc, "__notes__", ()):
                exc.add_note(where)
            raise exc
        self.count += 1
        self.run.info.errors.append(record)
        if plan.max_errors is not None and self.count > plan.max_errors:
            raise TooManyErrorsError(
                f"{plan.name}: {self.count} items failed, more than max_errors="
                f"{plan.max_errors}; the batch was stopped. Last error (item {index}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return record


_MISS = object()


class _Checkpoint:
    """Reads and writes one batch's items in the store.

    Results saved during one pass of the event loop are encoded together and handed to the
    writer as one group at the end of that pass (``flush``), before anything else can see or
    change them; the batch flushes once more when it ends, so ``post`` never runs ahead of the
    store. When exec keeps the loop busy, a group is handed over once its first result has
    waited ``FLUSH_AFTER`` seconds.
    """

    FLUSH_AFTER = 0.02

    __slots__ = (
        "codec",
        "error",
        "item_key",
        "loop",
        "params",
        "path",
        "pending",
        "run",
        "since",
        "stored",
    )

    def __init__(self, run: _Run, plan: _Plan, node: BaseNode, path: str) -> None:
        self.run, self.path, self.codec = run, path, plan.codec
        self.stored = run._stored
        custom = getattr(node, "item_key", None)
        self.item_key: Callable[[Any], str] | None = custom if callable(custom) else None
        self.params = node.params
        self.loop = run.loop
        self.pending: list[tuple[str, int, Any]] = []
        self.since = 0.0
        self.error: StoreError | None = None

    def key(self, item: Any) -> str:
        if self.item_key is not None:
            return str(self.item_key(item))
        try:
            return item_key(item, self.params)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"{self.path}: cannot make a checkpoint key for item {item!r:.80} ({exc}); "
                "define item_key(self, item) -> str on the node, or set checkpoint = False"
            ) from None

    def restore(self, key: str) -> Any:
        """The stored outcome for ``key``, or ``_MISS`` when the item must run."""
        if not self.stored:
            return _MISS
        hit = self.stored.get((self.path, key))
        if hit is None:
            return _MISS
        ok, text = hit
        if ok:
            try:
                value = self.codec.decode(text)
            except ValueError:  # stored by an exec with another return type: run it again
                return _MISS
            self.run.info.resumed += 1
            return value
        if self.run.runner.skip_failed:
            self.run.info.resumed += 1
            return ErrorRecord.model_validate_json(text)
        return _MISS

    def save_failure(self, key: str, index: int, failures: _Failures) -> None:
        """Store the error record of the item that is making the batch raise."""
        last = failures.last_record
        if last is not None and last.index == index:
            self.save_record(key, index, last)

    def save_outcome(self, key: str, index: int, value: Any) -> None:
        """Store what an item ended with after its failure was handled: a record or a value."""
        if isinstance(value, ErrorRecord):
            self.save_record(key, index, value)
        else:
            self.save(key, index, value)

    def save_record(self, key: str, index: int, record: ErrorRecord) -> None:
        row = [key, index, record.model_dump(mode="json")]
        self._writer().put(self.path, False, dumps([row]).encode())

    def save(self, key: str, index: int, value: Any) -> None:
        """Store exec's result; it is encoded with the others saved in this pass of the loop."""
        if self.error is not None:
            raise self.error
        pending = self.pending
        pending.append((key, index, value))
        if len(pending) == 1:
            self.since = time.monotonic()
            self.loop.call_soon(self._flush_soon)
        elif time.monotonic() - self.since > self.FLUSH_AFTER:
            self.flush()

    def _flush_soon(self) -> None:
        try:
            self.flush()
        except StoreError as exc:  # raised to the run by the next save, or by close
            self.error = exc

    def flush(self) -> None:
        """Hand every pending result to the writer as one group."""
        if self.pending:
            rows, self.pending = self.pending, []
            text, error = self.codec.encode_rows(rows)
            self._writer().put(self.path, True, text)
            if error is not None:
                raise error

    def close(self) -> None:
        """End of the batch: flush, and raise any error met while encoding."""
        self.flush()
        if self.error is not None:
            raise self.error

    def _writer(self) -> StoreWriter:
        writer = self.run._writer
        assert writer is not None
        return writer


class MemoryGuard:
    """Backpressure on resident memory: above the ceiling, no new item is admitted.

    A sampler task reads the process's RSS every 50 ms. While it is above the ceiling,
    workers wait before pulling their next item and work already in flight finishes. If memory
    stays high with nothing in flight, one waiting item at a time is let through so the run
    still ends.
    """

    INTERVAL = 0.05

    def __init__(self, max_rss_mb: float, run: _Run) -> None:
        self.limit = max_rss_mb * 1024 * 1024
        self.run = run
        self.engaged = False
        self.engagements = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            rss = current_rss()
            if rss > self.limit and not self.engaged:
                self.engaged = True
                self.engagements += 1
                self.run.event("memory_guard", "", "", ok=False, rss_mb=rss / 2**20)
            elif rss <= self.limit and self.engaged:
                self.engaged = False
                self.run.event("memory_guard", "", "", ok=True, rss_mb=rss / 2**20)
                self._wake(len(self._waiters))
            elif self.engaged and not any(s.in_flight for s in self.run.info.nodes.values()):
                self._wake(1)
            await asyncio.sleep(self.INTERVAL)

    def _wake(self, n: int) -> None:
        while n > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                n -= 1

    async def admit(self) -> None:
        """Wait until a new item may start."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await fut

    def stop(self) -> None:
        self._task.cancel()
        self._wake(len(self._waiters))
        self.run.info.memory_guard_engaged = self.engagements


def current_rss() -> int:
    """Resident memory of this process in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _ChunkSizer:
    """Picks how many items travel to a worker at once: about 20 ms of work per trip."""

    TARGET = 0.02
    MAX = 256

    def __init__(self, fixed: int | None, size: int | None, workers: int) -> None:
        self.fixed, self.size, self.workers = fixed, size, workers
        self.sent = 0
        self.per_item: float | None = None

    def next(self) -> int:
        if self.fixed:
            n = self.fixed
        elif self.per_item is None:
            n = 1
        else:
            n = max(1, min(self.MAX, int(self.TARGET / max(self.per_item, 1e-7))))
            if self.size is not None:  # leave work for every lane near the end
                n = min(n, max(1, (self.size - self.sent) // (2 * self.workers)))
        self.sent += n
        return n

    def observe(self, count: int, seconds: float) -> None:
        sample = seconds / count
        self.per_item = sample if self.per_item is None else 0.7 * self.per_item + 0.3 * sample


class _Source:
    """Items from a list, generator or async generator, pulled lazily by the workers."""

    __slots__ = ("_ait", "_it", "_lock", "size")

    def __init__(self, it: Iterator[Any] | None, ait: AsyncIterator[Any] | None, size: int | None):
        self._it, self._ait, self.size = it, ait, size
        self._lock = asyncio.Lock() if ait is not None else None

    async def take(self, n: int) -> list[Any]:
        if self._it is not None:
            return list(itertools.islice(self._it, n))
        assert self._ait is not None and self._lock is not None
        out: list[Any] = []
        async with self._lock:
            for _ in range(n):
                try:
                    out.append(await self._ait.__anext__())
                except StopAsyncIteration:
                    break
        return out


def _items(prep_res: Any, owner: BaseNode, what: str) -> _Source:
    if prep_res is None:
        return _Source(iter(()), None, 0)
    if hasattr(prep_res, "__aiter__"):
        return _Source(None, prep_res.__aiter__(), None)
    try:
        it = iter(prep_res)
    except TypeError:
        if not prep_res:  # 0 or False: PocketFlow's `items or []` runs nothing
            return _Source(iter(()), None, 0)
        hook = "prep_async" if isinstance(owner, AsyncNode) else "prep"
        raise _BatchInputError(
            f"{owner.name}.{hook} returned {type(prep_res).__name__} {prep_res!r:.80}, but a "
            f"batch needs an iterable of {what} (a list, a generator or an async generator)"
        ) from None
    size = len(prep_res) if hasattr(prep_res, "__len__") else None
    return _Source(it, None, size)


async def _drive(
    source: _Source | Iterator[Any], workers: int, fn: Callable[[int, Any], Awaitable[None]]
) -> None:
    """Call ``fn(index, item)`` for every item, with at most ``workers`` calls in flight."""
    if not isinstance(source, _Source):
        source = _Source(source, None, None)
    if source.size is not None:
        workers = min(workers, source.size)
    counter = itertools.count()
    it, ait = source._it, source._ait

    if it is not None:

        async def lane(_: int) -> None:
            for item in it:
                await fn(next(counter), item)

    else:

        async def lane(_: int) -> None:
            while True:
                batch = await source.take(1)
                if not batch:
                    return
                await fn(next(counter), batch[0])

    del ait
    await _supervise(workers, lane)


async def _supervise(
    workers: int, lane: Callable[[int], Awaitable[None]], ck: _Checkpoint | None = None
) -> None:
    """Run ``workers`` lanes; the first failure cancels the others and is raised.

    With a checkpoint, every result saved is handed to the store before this returns or
    raises.
    """
    try:
        await _run_lanes(workers, lane)
    except BaseException:
        if ck is not None:
            with contextlib.suppress(StoreError):  # the lanes' own error is the one to raise
                ck.flush()
        raise
    if ck is not None:
        ck.close()


async def _run_lanes(workers: int, lane: Callable[[int], Awaitable[None]]) -> None:
    if workers <= 1:
        await lane(0)
        return
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = [
        loop.create_task(lane(k))  # type: ignore[arg-type]
        for k in range(workers)
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception()), None)
    if failed is not None:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise failed.exception()  # type: ignore[misc]


async def _retry_here(call: Callable[[Any], Any], awaitable: bool, item: Any, attempt: int) -> Any:
    """Another try on the event loop, with ``cur_retry`` set for it."""
    token = _cur_retry.set(attempt)
    try:
        res = call(item)
        return (await res) if awaitable else res
    finally:
        _cur_retry.reset(token)


def _no_exec(item: Any) -> Any:
    """What exec gives with no tries left (PocketFlow's ``max_retries=0``)."""
    return None


def _release_all(limiters: tuple[NamedLimiter, ...]) -> None:
    for lim in limiters:
        lim.release()


async def _hook(node: BaseNode, name: str, *args: Any) -> Any:
    try:
        return await getattr(node, name)(*args)
    except Exception as exc:
        _note(exc, node, name)
        raise


def _call_hook(node: BaseNode, name: str, *args: Any) -> Any:
    try:
        return getattr(node, name)(*args)
    except Exception as exc:
        _note(exc, node, name)
        raise


def _note(exc: BaseException, node: BaseNode, hook: str) -> None:
    if not any(n.startswith("flowkit:") for n in getattr(exc, "__notes__", ())):
        exc.add_note(f"flowkit: raised in {node.name}.{hook}")
