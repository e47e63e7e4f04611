"""The state of one run: its plans, named limiters, executors, store, counts and events.

Built when a run starts and closed when it ends, whatever happens: background work is
cancelled through the run's task group, the store is finished and every pool is shut down.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from flowkit.errors import ConfigError
from flowkit.events import Event, EventKind, Subscriber
from flowkit.executors import (
    Executor,
    NodePayload,
    ProcessExecutor,
    RayExecutor,
    ThreadExecutor,
)
from flowkit.fingerprint import fingerprint
from flowkit.limits import NamedLimiter
from flowkit.node import BaseNode, node_id
from flowkit.results import NodeStats, RunInfo
from flowkit.runner.checkpoint import Checkpoint
from flowkit.runner.memory import MemoryGuard
from flowkit.runner.plan import Plan
from flowkit.runner.tasks import TaskGroup
from flowkit.store import NO_OUTCOMES, Store, StoredOutcomes, StoreWriter

if TYPE_CHECKING:
    from flowkit.runner.run import Runner


class RunState:
    """State of one run: plans, limiters, executors, store and counts."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.loop = asyncio.get_running_loop()
        self.info = RunInfo(run_id=runner.run_id or uuid.uuid4().hex[:12], started=time.time())
        self._t0 = time.perf_counter()
        self.tasks = TaskGroup()
        self._plans: dict[int, Plan] = {}
        self._limiters: dict[str, NamedLimiter] = {}
        self._executors: dict[str, Executor] = {}
        self.emit: Subscriber | None = self._broadcast if runner.subscribers else None
        self._store: Store | None = None
        self.writer: StoreWriter | None = None
        self.stored: StoredOutcomes = NO_OUTCOMES
        self.guard = MemoryGuard(runner.max_rss_mb, self) if runner.max_rss_mb else None

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

    def waited(
        self,
        plan: Plan,
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
            kind: EventKind = "limiter_wait" if limiter is not None else "item_wait"
            self.emit(Event(kind, ended, self.info.run_id, path, plan.name, index, True, data))

    # -- what the run holds ---------------------------------------------------------------

    def plan(self, node: BaseNode) -> Plan:
        """The plan of ``node`` (and of every copy of it), made on first use."""
        key = node_id(node)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = Plan(self, node)
            if plan.executor in ("process", "ray"):
                NodePayload(node)  # refuse an unpicklable node before any work starts
        return plan

    def limiter(self, name: str, user: str) -> NamedLimiter:
        """The run's named limiter ``name``, for ``user`` (a node, or exec code)."""
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

    def stats_for(self, name: str, limit: int | None, executor: str) -> NodeStats:
        stats = self.info.nodes.get(name)
        if stats is None:
            stats = self.info.nodes[name] = NodeStats(name, limit, executor)
        return stats

    def executor(self, kind: str) -> Executor:
        """The run's executor of ``kind`` ("thread", "process" or "ray"), made on first use."""
        executor = self._executors.get(kind)
        if executor is None:
            runner = self.runner
            if kind == "thread":
                executor = ThreadExecutor(runner.thread_workers)
            elif kind == "process":
                executor = ProcessExecutor(runner.process_workers, runner.start_method)
            else:
                executor = RayExecutor(runner.ray_address)
            self._executors[kind] = executor
        return executor

    @property
    def threads(self) -> ThreadExecutor:
        executor = self.executor("thread")
        assert isinstance(executor, ThreadExecutor)
        return executor

    async def open_store(self, flow: BaseNode) -> None:
        """Open the store, take the run's lock and check what a resume resumes (the flow's
        fingerprint), then start the writer."""
        if self.runner.store is None:
            return
        mark = fingerprint(flow, self.runner.settings)
        self._store = Store(self.runner.store)
        try:
            self.stored = self._store.begin(
                self.info.run_id, flow.name, resume=self.runner.resume, fingerprint=mark
            )
            self.writer = await self._store.writer(self.info.run_id)
        except BaseException:
            self._store.close()
            self._store = None
            raise

    def checkpoint(self, plan: Plan, node: BaseNode, path: str) -> Checkpoint | None:
        """A checkpoint for one batch of ``node`` at ``path``, or None without a store."""
        if self.writer is None or not plan.checkpoint:
            return None
        return Checkpoint(self, plan, node, self.writer, path)

    async def close(self, ok: bool = False) -> None:
        """End the run: background work, store, then executors."""
        self.info.wall_time = time.perf_counter() - self._t0
        self.info.limiters = {name: lim.stats() for name, lim in sorted(self._limiters.items())}
        await self.tasks.aclose()
        if self._store is not None:
            try:
                if self.writer is not None:
                    await self.writer.close()
                self._store.finish(self.info.run_id, "done" if ok else "failed")
            finally:
                self._store.close()
        for executor in self._executors.values():
            executor.close(ok)
