"""The run's task group: the one owner of background work (the memory sampler, micro-batches,
batch timers, checkpoint flushes), cancelled and awaited when the run ends, as a Trio
nursery would be; ``run_on_new_loop``, a run on a new event loop (uvloop when installed);
``run_blocking``, a run from sync code on a thread with its own loop; ``run_sync``, either."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_on_new_loop(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, on uvloop when it is installed: its event loop wakes tasks
    faster (2,000 x 20 ms sleeps at a limit of 200 reach 97 % of the ideal rate on uvloop
    against 93 % on asyncio's; ``benchmarks/core.py``). ``FLOWKIT_UVLOOP=0`` turns it off."""
    factory = None
    if os.environ.get("FLOWKIT_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def run_blocking(
    main: Coroutine[Any, Any, Any], run: Callable[[Coroutine[Any, Any, Any]], Any] = asyncio.run
) -> Any:
    """Run ``main`` to the end with ``run`` (a new event loop) in a helper thread and return
    what it returns: sync code called on a running loop (a notebook cell, a hook running a
    sub-flow) blocks, as PocketFlow does. An interrupt while it waits (Ctrl-C, a notebook's
    stop button) cancels ``main`` there and waits for it to end before it propagates."""
    started = threading.Event()
    where: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = []

    async def guarded() -> Any:
        task = asyncio.current_task()
        assert task is not None
        where.append((asyncio.get_running_loop(), task))
        started.set()
        return await main

    with ThreadPoolExecutor(1, thread_name_prefix="flowkit-sync-run") as pool:
        done = pool.submit(run, guarded())
        try:
            while not done.done():  # waits in short steps, so an interrupt is seen at once
                futures.wait([done], timeout=0.25)
            return done.result()
        except KeyboardInterrupt:
            if started.wait(1.0):
                loop, task = where[0]
                with contextlib.suppress(RuntimeError):  # a closed loop: the run is over
                    loop.call_soon_threadsafe(task.cancel)
            raise


def run_sync(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` from sync code: on a new event loop, or with ``run_blocking`` when this
    thread already runs one (a notebook cell, a hook running a sub-flow). The run starts
    outside the check's ``except`` block, so the errors it records chain nothing to it."""
    try:
        asyncio.get_running_loop()
        blocking = True
    except RuntimeError:
        blocking = False
    return run_blocking(main, run_on_new_loop) if blocking else run_on_new_loop(main)


class TaskGroup:
    """Starts background tasks and callbacks for one run; ``aclose`` cancels what is left
    and waits for it, so nothing keeps running after the run returns."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handles: set[asyncio.Handle] = set()
        self._on_stop: list[Callable[[], None]] = []

    def start(
        self, coro: Coroutine[Any, Any, Any], on_stop: Callable[[], None] | None = None
    ) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of the run; ``on_stop`` is called once the group closes."""
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if on_stop is not None:
            self._on_stop.append(on_stop)
        return task

    def call_later(self, delay: float, fn: Callable[[], None]) -> asyncio.Handle:
        """Call ``fn`` after ``delay`` seconds, unless the run ends first."""
        return self._track(lambda fire: self._loop.call_later(delay, fire), fn)

    def call_soon(self, fn: Callable[[], None]) -> asyncio.Handle:
        """Call ``fn`` at the end of this pass of the event loop, unless the run ends first."""
        return self._track(self._loop.call_soon, fn)

    def _track(
        self, schedule: Callable[[Callable[[], None]], asyncio.Handle], fn: Callable[[], None]
    ) -> asyncio.Handle:
        handles = self._handles

        def fire() -> None:
            handles.discard(handle)
            fn()

        handle = schedule(fire)
        handles.add(handle)
        return handle

    async def aclose(self) -> None:
        """Cancel every pending callback and task, wait for the tasks, then run the
        ``on_stop`` callbacks."""
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for stop in self._on_stop:
            stop()
