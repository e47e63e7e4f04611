"""The runner: its options, and ``run`` / ``run_async``, which run a flow from start to end.

Nodes say what to do; the runner decides how much runs at once and where: per-node limits
(one counter per node for the whole run), named limiters, executors, retries and failure
policy. The work itself is in the modules beside this one: ``walk`` (the graph), ``items``
and ``lanes`` (bounded item loops), ``admission``, ``failures``, ``checkpoint``, ``memory``.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flowkit.errors import ConfigError
from flowkit.events import Event, Observer, Subscriber
from flowkit.executors import cpu_count
from flowkit.limits import Limit, check_limit
from flowkit.node import BaseNode
from flowkit.results import RunInfo
from flowkit.runner.context import current_run
from flowkit.runner.state import RunState
from flowkit.runner.walk import run_node, validate


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
    retrying stored failures unless ``skip_failed``. ``settings`` (e.g. a command's options)
    are recorded with the flow's fingerprint: a resume with other settings or another flow is
    refused, and a node whose code or params changed runs again (``flowkit.fingerprint``).
    ``max_rss_mb`` stops admitting new items while the process's resident memory is above it.

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
        settings: Mapping[str, Any] | None = None,
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
        self.settings = dict(settings or {})
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
        run = RunState(self)
        self.last_run = run.info
        try:
            validate(run, flow, check_node_limits=True)
            await run.open_store(flow)
        except BaseException:
            await run.close()
            raise
        subscribers = list(self.subscribers)
        if self.progress:
            subscribers.append(_observer("flowkit.progress", "Progress")())
        if self.report is not None:
            writer = _observer("flowkit.report", "ReportWriter")
            subscribers.append(writer(self.report, info=run.info))
        if len(subscribers) > len(self.subscribers):

            def fan_out(event: Event) -> None:
                for sub in subscribers:
                    sub(event)

            run.emit = fan_out
        observers = [sub for sub in subscribers if isinstance(sub, Observer)]
        if self.detect_blocking:
            detector = _observer("flowkit.detector", "BlockDetector").for_run(
                flow,
                self.detect_blocking,
                start_method=self.start_method,
                emit=run.emit,
                limits=self.node_limits,
            )
            if detector is not None:  # closed first, so its last findings reach the others
                observers.insert(0, detector)
        token = current_run.set(run)
        for observer in observers:
            observer.start(run.info.run_id)
        ok = False
        try:
            run.event("run_start", flow.name, flow.name)
            result = await run_node(run, flow, shared, "")
            ok = True
            return result
        finally:
            current_run.reset(token)
            await run.close(ok)
            run.event("run_end", flow.name, flow.name, ok=ok, limiters=run.info.limiters)
            for observer in observers:
                observer.close()


async def run_in_current_or_new(node: BaseNode, shared: Any) -> Any:
    """Run ``node`` inside the run already in progress on this loop, else in a new run."""
    run = current_run.get()
    if run is not None and run.loop is asyncio.get_running_loop():
        validate(run, node, check_node_limits=False)
        return await run_node(run, node, shared, "")
    return await Runner().run_async(node, shared)


class Engine:
    """The default engine of PocketFlow's ``node.run()`` / ``run_async()``: a fresh Runner,
    or the run already in progress on this loop."""

    def run(self, node: BaseNode, shared: Any) -> Any:
        return Runner().run(node, shared)

    async def run_async(self, node: BaseNode, shared: Any) -> Any:
        return await run_in_current_or_new(node, shared)


def _observer(module: str, name: str) -> Any:
    """An observer class, by name: observers sit above the runner, which never imports them."""
    return getattr(importlib.import_module(module), name)
