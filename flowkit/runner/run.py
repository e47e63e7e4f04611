"""The runner: its settings, one run's state, and the walk of a flow's graph.

``Runner.run`` / ``run_async`` / ``start`` begin a run. ``Run`` plans every node before any
work starts, then ``run_node`` walks the graph (a node's prep, items and post; a flow's steps
by action; batch flows' sub-flows and ``Parallel``'s branches), handing each node's items to
``flowkit.runner.items``. A run owns what it opens (executors, store, background tasks, its
``RunInfo``) and closes it whatever happens; observers that raise are dropped, not fatal.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from flowkit.engine import standard_observers
from flowkit.errors import BudgetSpentError, BudgetStop, ConfigError
from flowkit.events import (
    Event,
    LimiterChanged,
    NodeEnded,
    NodeStarted,
    RunEnded,
    RunStarted,
    Subscriber,
)
from flowkit.executors import (
    Executor,
    LoopExecutor,
    ProcessExecutor,
    RayExecutor,
    ThreadExecutor,
    cpu_count,
)
from flowkit.executors.thread import DaemonThreadPool
from flowkit.flow import Flow, Parallel
from flowkit.graph import build_graph
from flowkit.limits import Limit, Limiters, check_limit
from flowkit.node import AsyncNode, BaseNode, node_id, node_options
from flowkit.results import NodeStats, RunInfo
from flowkit.runner.budget import Budgets
from flowkit.runner.current import current_node, current_run
from flowkit.runner.items import await_hook, call_hook, run_flow, run_items, run_parallel
from flowkit.runner.nodes import NodeRun, Settings, make_plan
from flowkit.runner.options import (
    check_names,
    checked_budget,
    checked_limits,
    checked_otel,
    checked_timeouts,
)
from flowkit.runner.stream import RunStream, Sink, landing
from flowkit.runner.tasks import run_sync
from flowkit.serve import live_address


class Runner:
    """Runs flows with limits, executors, retries and failure isolation.

    ``limits`` maps node names to an int (overriding that node's ``max_concurrency``) and
    limiter names to a ``flowkit.Limit`` (a budget shared by every node that ``uses`` it).
    ``executors`` adds executors by name (objects of the ``flowkit.executors.Executor``
    protocol), for nodes that name them. ``thread_workers`` and ``process_workers`` size the
    pools (default: min(32, cores + 4) threads; one process per core). ``start_method`` picks
    how worker processes start. ``ray_address`` joins a Ray cluster instead of starting a local
    one. ``max_steps`` bounds the nodes one pass of any flow may run. ``on_event`` receives
    every ``flowkit.events.Event`` of the run (a callable or several; an ``Observer`` also hears
    the run's start and close).

    With ``store`` (a SQLite file) every finished exec result is checkpointed under the run id
    (``run_id``, or a new one); ``resume=RUN_ID`` reruns a flow reusing every stored result,
    retrying stored failures unless ``skip_failed``. ``config`` (e.g. a command's options) is
    recorded with the flow's fingerprint: a resume with another config or another flow is
    refused, and a node whose code or params changed runs again (``flowkit.fingerprint``).
    ``max_rss_mb`` stops admitting new items while the process's resident memory is above it.

    ``timeouts`` maps node names to seconds per try (over a node's ``timeout``). ``budget`` (a
    ``Limit``'s max_calls/max_tokens/max_cost) counts all named limiters' calls: once it or a
    limiter's own budget is spent the run ends with the status "budget" (``BudgetSpentError``).
    ``cache`` (a SQLite file) keeps results for later runs. ``progress`` shows per-node progress
    (default: on a terminal or in a notebook). ``report="DIR"`` writes ``report.json``,
    ``report.html`` and ``report.png`` there when the run ends; ``live`` (a port, True or
    "HOST:PORT") serves it while the run goes on. ``detect_blocking`` (seconds, default 0.1;
    None turns it off) warns once per node whose code blocks the event loop longer than that.
    ``otel`` exports the run as OpenTelemetry traces: True (to the endpoint the
    ``OTEL_EXPORTER_OTLP_*`` variables name, else http://localhost:4318), an OTLP/HTTP endpoint
    URL, or a ``flowkit.otel.OtelExport`` (needs the ``otel`` extra).
    """

    def __init__(
        self,
        *,
        limits: Mapping[str, int | Limit] | None = None,
        executors: Mapping[str, Executor] | None = None,
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
        config: Mapping[str, Any] | None = None,
        max_rss_mb: float | None = None,
        timeouts: Mapping[str, float] | None = None,
        budget: Limit | None = None,
        cache: str | Path | None = None,
        progress: bool | None = None,
        report: str | Path | None = None,
        live: bool | int | str | None = None,
        detect_blocking: float | None = 0.1,
        otel: bool | str | Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        node_limits, named = checked_limits(limits)
        cores = cpu_count()
        if resume is not None and store is None:
            raise ConfigError("Runner(resume=...) needs a store: pass store='PATH.db' too")
        if resume is not None and run_id is not None and run_id != resume:
            raise ConfigError(f"Runner got run_id={run_id!r} and resume={resume!r}; give one")
        self.settings = Settings(
            node_limits=node_limits,
            named_limits=named,
            executors=dict(executors or {}),
            thread_workers=check_limit(
                thread_workers or min(32, cores + 4), "Runner thread_workers"
            ),
            process_workers=check_limit(process_workers or cores, "Runner process_workers"),
            start_method=start_method,
            ray_address=ray_address,
            max_steps=None if max_steps is None else check_limit(max_steps, "max_steps"),
            store=store,
            run_id=resume or run_id,
            resume=resume is not None,
            skip_failed=skip_failed,
            config=dict(config or {}),
            max_rss_mb=max_rss_mb,
            timeouts=checked_timeouts(timeouts),
            cache=cache,
            budget=checked_budget(budget),
            clock=clock,
            sleep=sleep,
        )
        self.progress = progress  # None: on a terminal or in a notebook (flowkit.observers)
        self.report = report
        self.live = live_address(live)
        if detect_blocking and (
            not isinstance(detect_blocking, int | float) or detect_blocking < 0
        ):
            raise ConfigError(
                f"Runner detect_blocking must be a number of seconds or None, got "
                f"{detect_blocking!r}"
            )
        self.detect_blocking = float(detect_blocking) if detect_blocking else None
        self.otel = checked_otel(otel)
        if on_event is None:
            self.subscribers: list[Subscriber] = []
        elif callable(on_event):
            self.subscribers = [on_event]
        else:
            self.subscribers = list(on_event)
        self.last_run: RunInfo | None = None
        """The ``RunInfo`` of the run that ended last (each run's own is on its handle)."""

    def run(self, flow: BaseNode, shared: Any = None) -> Any:
        """Run ``flow`` from synchronous code; returns what its post returns."""
        return run_sync(self.run_async(flow, shared))

    async def run_async(self, flow: BaseNode, shared: Any = None) -> Any:
        """Run ``flow`` (a flow or a single node); returns what its post returns."""
        return await self.start(flow, shared)

    def start(self, flow: BaseNode, shared: Any = None) -> RunHandle:
        """A run of ``flow``, to await: ``await runner.start(flow, shared)`` gives what its
        post returns, and the handle's ``info`` is this run's own ``RunInfo``."""
        if not isinstance(flow, BaseNode):
            raise ConfigError(f"Runner can only run nodes and flows, got {type(flow).__name__}")
        run_id = self.settings.run_id or uuid.uuid4().hex[:12]
        info = RunInfo(run_id=run_id, started=time.time(), flow=flow.name)
        return RunHandle(self, flow, shared, info)

    def stream(self, flow: BaseNode, shared: Any = None) -> RunStream:
        """Run ``flow``, yielding each ``ItemResult`` as it lands (see ``RunStream``)."""
        return RunStream(self.start(flow, shared))


class RunHandle:
    """One run of a flow: ``info`` is its own ``RunInfo`` (live while it runs); awaiting
    the handle runs it and gives what the flow's post returns."""

    def __init__(self, runner: Runner, flow: BaseNode, shared: Any, info: RunInfo) -> None:
        self.runner, self.flow, self.shared, self.info = runner, flow, shared, info
        self._started = False
        self.sink: Sink | None = None  # hears each item as it lands (a RunStream)

    def __await__(self) -> Generator[Any, None, Any]:
        if self._started:
            raise RuntimeError("a run handle is awaited once; start another run")
        self._started = True
        return self._main().__await__()

    async def _main(self) -> Any:
        runner, flow, info = self.runner, self.flow, self.info
        run = Run(runner.settings, info)
        run.sink = self.sink
        try:
            run.plan(flow, check_node_limits=True)
            settings = runner.settings
            if settings.store is not None:
                from flowkit.runner.checkpoint import RunStore

                run.store = await RunStore.open(settings, info.run_id, flow, run.tasks, run.budgets)
            if settings.cache is not None:
                from flowkit.runner.caching import RunCache

                run.cache = RunCache(settings.cache, run.tasks)
        except BaseException:
            await run.close("failed")
            raise
        subscribers = list(runner.subscribers)
        observed = runner.progress is not False or runner.report is not None or runner.live
        if observed or runner.detect_blocking or runner.otel:
            subscribers += standard_observers(runner, flow, info, run.event)
        run.observe(subscribers)
        token = current_run.set(run.limiters)
        in_run = running.set(run)
        status = "failed"
        try:
            run.event(RunStarted(time.monotonic(), info.run_id, flow.name))
            result = await run_node(run, flow, self.shared, "")
            status = "done"
            return result
        except (asyncio.CancelledError, KeyboardInterrupt):
            status = "interrupted"
            raise
        except BudgetStop as stop:
            status = "budget"
            raise BudgetSpentError(f"{flow.name} stopped: {stop}") from None
        finally:
            current_run.reset(token)
            running.reset(in_run)
            await run.close(status)
            ended = RunEnded(
                time.monotonic(), info.run_id, flow.name, status == "done", status, info.limiters
            )
            run.event(ended)
            if run.observers is not None:
                run.observers.close()
            runner.last_run = info


class Run:
    """One run's state: node plans and their ``NodeRun``, named limiters, executors, store,
    background tasks and observers. Only the walk below holds it whole; the item path, the
    store's checkpoints and the memory guard get narrow objects."""

    def __init__(self, settings: Settings, info: RunInfo) -> None:
        self.settings, self.info = settings, info
        self.loop = asyncio.get_running_loop()
        self._t0 = time.perf_counter()
        self._tasks: Any = None
        self.nodes: dict[int, NodeRun] = {}
        self.limiters = Limiters(settings.named_limits, clock=settings.clock, sleep=settings.sleep)
        self._executors: dict[str, Executor] = {}
        self.observers: Any = None
        self.emit: Subscriber | None = None
        self.call_ids = itertools.count()
        self.calls_per_node: int | None = None  # the observers' bound, when they set one
        self.store: Any = None  # the checkpoints' RunStore, with a store
        self.cache: Any = None  # the cache's RunCache, with a cache
        self.sink: Sink | None = None
        self.guard: Any = None
        self.budgets: Budgets | None = None
        if settings.max_rss_mb:
            from flowkit.runner.memory import MemoryGuard

            self.guard = MemoryGuard(
                settings.max_rss_mb,
                self.tasks(),
                lambda: any(s.in_flight for s in info.nodes.values()),
                None,
                info.run_id,
            )
        if settings.budget is not None or any(v.budgeted for v in settings.named_limits.values()):
            self.guard = self.budgets = Budgets(settings.budget, self.guard)  # the gate
            self.limiters.budgets_of = self.budgets.of_limiter

    # -- events -----------------------------------------------------------------------------

    def observe(self, subscribers: list[Subscriber]) -> None:
        """Deliver events to ``subscribers``; an ``Observer`` among them is started."""
        if not subscribers:
            return
        from flowkit.runner.observing import Observers

        self.observers = Observers(subscribers, self.info)
        if not self.observers.listening:
            return
        self.emit = self.observers.emit
        self.calls_per_node = self.observers.calls_per_node
        if self.guard is not None:
            self.guard.emit = self.emit
        for node_run in self.nodes.values():
            node_run.emit = self.emit
            if self.calls_per_node is not None:
                node_run.calls_left = self.calls_per_node
        self.limiters.watch(self._limiter_changed)

    def _limiter_changed(self, name: str, taken: bool, holders: int) -> None:
        if self.emit is not None:
            self.emit(LimiterChanged(time.monotonic(), self.info.run_id, name, taken, holders))

    def event(self, event: Event) -> None:
        if self.emit is not None:
            self.emit(event)

    # -- plans, limiters, executors ---------------------------------------------------------

    def plan(self, root: BaseNode, *, check_node_limits: bool) -> None:
        """Plan every node of ``root``'s graph (``flowkit.graph``'s walk, the one the run will
        take) and check every flow's limit: bad configuration is refused before any work."""
        names = set()
        for g in build_graph(root).nodes:
            names.add(g.node.name)
            if isinstance(g.node, Flow | Parallel):
                node_options(g.node, warn=False)  # checks the flow's own limit
            else:
                self.node_run(g.node)
        s, hint = self.settings, ". Use a flowkit.Limit value for a named limiter"
        if check_node_limits and s.node_limits:
            check_names("limits", s.node_limits, names, hint)
        if check_node_limits and s.timeouts:
            check_names("timeouts", s.timeouts, names)

    def node_run(self, node: BaseNode) -> NodeRun:
        """The run-time state of ``node`` (and of every copy of it), made on first use."""
        key = node_id(node)
        nr = self.nodes.get(key)
        if nr is None:
            plan = make_plan(node, self.settings, self.size_of)
            executor = self.executor(plan.executor)
            if plan.executor in ("process", "ray"):
                executor.bind(node)  # refuse an unpicklable node before any work starts
            stats = self.info.nodes.get(plan.name)
            if stats is None:
                limit = plan.limit if plan.executor == "async" else plan.capacity
                stats = self.info.nodes[plan.name] = NodeStats(plan.name, limit, plan.executor)
                stats.timeout = plan.timeout
            limiters = tuple(self.limiters.limiter(name, plan.name) for name in plan.uses)
            for lim in limiters:
                lim.used_by(plan.name, "runner")
            nr = self.nodes[key] = NodeRun(
                plan,
                executor,
                limiters,
                stats,
                emit=self.emit,
                run_id=self.info.run_id,
                call_ids=self.call_ids,
                tasks=self.tasks,
                sleep=self.settings.sleep,
                errors=self.info.errors,
                threads=self.thread_pool,
            )
            if self.calls_per_node is not None:
                nr.calls_left = self.calls_per_node
        return nr

    def executor(self, name: str) -> Executor:
        """The run's executor called ``name``, made on first use."""
        executor = self._executors.get(name)
        if executor is None:
            s = self.settings
            if name in s.executors:
                executor = s.executors[name]
            elif name == "async":
                executor = LoopExecutor()
            elif name == "thread":
                executor = ThreadExecutor(s.thread_workers)
            elif name == "process":
                executor = ProcessExecutor(s.process_workers, s.start_method)
            else:
                executor = RayExecutor(s.ray_address)
            self._executors[name] = executor
        return executor

    def thread_pool(self) -> DaemonThreadPool:
        """The run's thread pool (the one ``executor="thread"`` nodes use)."""
        executor = self.executor("thread")
        assert isinstance(executor, ThreadExecutor)
        return executor.pool()

    def size_of(self, name: str) -> int:
        return self.executor(name).size

    def tasks(self) -> Any:
        """The run's task group, made on first use (micro-batches, flushes, the guard)."""
        if self._tasks is None:
            from flowkit.runner.tasks import TaskGroup

            self._tasks = TaskGroup()
        return self._tasks

    # -- the end ----------------------------------------------------------------------------

    async def close(self, status: str) -> None:
        """End the run: background work, store, then executors (``status``: how it ended)."""
        info = self.info
        info.wall_time = time.perf_counter() - self._t0
        info.status = status
        info.limiters = self.limiters.stats()
        if self.guard is not None:
            info.memory_guard_engaged = self.guard.engagements
        info.budgets = self.budgets.stats() if self.budgets is not None else {}
        if self._tasks is not None:
            await self._tasks.aclose()
        if self.cache is not None:
            self.cache.close()
        if self.store is not None:
            info.resumed = self.store.resumed
            await self.store.close(info.run_id, status, self.budgets)
        for name, executor in self._executors.items():
            if name not in self.settings.executors:  # a user's executor outlives the run
                executor.close(status == "done")


# -- the walk --------------------------------------------------------------------------------


async def run_node(run: Run, node: BaseNode, shared: Any, parent: str) -> Any:
    """Run one node or flow (prep, exec, post); ``parent`` is the enclosing path."""
    path = f"{parent}/{node.name}" if parent else node.name
    emit, run_id = run.emit, run.info.run_id
    if isinstance(node, Flow | Parallel):
        if emit is not None:
            emit(NodeStarted(time.monotonic(), run_id, path, node.name, "flow"))
        ok = False
        try:
            step = functools.partial(run_node, run)
            if isinstance(node, Flow):
                max_steps = node.max_steps or run.settings.max_steps
                result = await run_flow(node, shared, path, step, max_steps, emit, run_id)
            else:
                result = await run_parallel(node, shared, path, step)
            ok = True
            return result
        finally:
            if emit is not None:
                emit(NodeEnded(time.monotonic(), run_id, path, node.name, ok, "flow"))
    nr = run.node_run(node)
    plan = nr.plan
    if run.budgets is not None and run.budgets.stop is not None:
        raise BudgetStop(run.budgets.stop)  # no node starts once a budget is spent
    if emit is not None:
        limit = plan.limit if plan.executor == "async" else plan.capacity
        shape = (plan.executor, limit, plan.batch)
        emit(NodeStarted(time.monotonic(), run_id, path, plan.name, "node", *shape))
    ok = False
    token = current_node.set((nr, path))
    ck = run.store.checkpoint(nr, node, path) if run.store is not None else None
    if plan.cache is not None and run.cache is not None:
        ck = run.cache.batch(nr, node, path, ck)
    landed = None
    if run.sink is not None or plan.post_item is not None:
        landed = landing(run.sink, emit, nr, node, shared, path)
    try:
        if plan.is_async:
            assert isinstance(node, AsyncNode)
            prep_res = await await_hook(node, "prep_async", shared)
            exec_res = await run_items(nr, node, prep_res, path, ck, run.guard, landed)
            result = await await_hook(node, "post_async", shared, prep_res, exec_res)
        else:
            prep_res = call_hook(node, "prep", shared)
            exec_res = await run_items(nr, node, prep_res, path, ck, run.guard, landed)
            result = call_hook(node, "post", shared, prep_res, exec_res)
        ok = True
        return result
    finally:
        current_node.reset(token)
        if emit is not None:
            emit(NodeEnded(time.monotonic(), run_id, path, plan.name, ok))


running: ContextVar[Run | None] = ContextVar("flowkit_running", default=None)
"""The run in progress, for a sub-flow run from a hook to join it (``runner.engine``)."""
