"""Threads as an executor: sync exec for blocking I/O and code that releases the GIL.

The pool's threads are daemons: a call still blocking when a run is interrupted is
abandoned (Python cannot stop a thread), said once, and never holds up the process's exit.
A call cancelled while it runs (a node's timeout) is abandoned too: the pool starts one more
thread for as long as it stays stuck, so the timeout does not cost the node a worker.
"""

from __future__ import annotations

import asyncio
import queue
import signal
import threading
import warnings
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor as FuturesExecutor
from concurrent.futures import Future
from typing import Any

from flowkit.errors import FlowkitWarning
from flowkit.executors.base import Outcome, call_with_retry_index, run_items

_Work = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...]] | None


class _Abandonable(Future[Any]):
    """A pool future that, cancelled while it runs, tells the pool its thread is stuck."""

    def __init__(self, pool: DaemonThreadPool) -> None:
        super().__init__()
        self._pool = pool

    def cancel(self) -> bool:
        if self.running():
            self._pool.abandon(self)
        return super().cancel()


class DaemonThreadPool(FuturesExecutor):
    """A ``concurrent.futures`` executor of at most ``workers`` daemon threads, started as
    work arrives."""

    def __init__(self, workers: int, name: str = "flowkit") -> None:
        self.workers, self.name = workers, name
        self._queue: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self.busy = 0
        self.abandoned = 0  # threads stuck in a call whose result nobody waits for
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if kwargs:
            return self.submit(lambda: fn(*args, **kwargs))
        if self._closed:
            raise RuntimeError("the thread pool is shut down")
        future: Future[Any] = _Abandonable(self)
        with self._lock:
            if self._idle == 0 and len(self._threads) < self.workers + self.abandoned:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1
        self._queue.put((future, fn, args))
        return future

    def _work(self) -> None:
        # Signals for the process go to the main thread: one delivered to a worker thread
        # would not wake an event loop waiting in select(), and Ctrl-C would go unheard.
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        while True:
            work = self._queue.get()
            if work is None:
                return
            future, fn, args = work
            if future.set_running_or_notify_cancel():
                with self._lock:
                    self.busy += 1
                # Not busy once the call returns, before its caller can hear of it: a run
                # closing on that news must not count this thread as stuck.
                try:
                    result = fn(*args)
                except BaseException as exc:
                    with self._lock:
                        self.busy -= 1
                    future.set_exception(exc)
                else:
                    with self._lock:
                        self.busy -= 1
                    future.set_result(result)
            with self._lock:
                self._idle += 1

    def abandon(self, future: Future[Any]) -> None:
        """Nobody waits for ``future``'s running call any more: let one more thread start
        while it runs."""
        with self._lock:
            self.abandoned += 1

        def released(_: Future[Any]) -> None:
            with self._lock:
                self.abandoned -= 1

        future.add_done_callback(released)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        if cancel_futures:
            while True:
                try:
                    work = self._queue.get_nowait()
                except queue.Empty:
                    break
                if work is not None:
                    work[0].cancel()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


class ThreadExecutor:
    """Runs exec on a pool of ``workers`` daemon threads, started on first use."""

    def __init__(self, workers: int) -> None:
        self.size = workers
        self._pool: DaemonThreadPool | None = None

    def pool(self) -> DaemonThreadPool:
        if self._pool is None:
            self._pool = DaemonThreadPool(self.size)
        return self._pool

    def bind(self, node: Any) -> ThreadBinding:
        return ThreadBinding(self.pool(), node)

    def close(self, ok: bool = True) -> None:
        """After a clean run the threads are idle: wait for them, so no stray thread makes a
        later process pool fall back from fork to forkserver. After a failure or a cancel a
        thread may be stuck in a blocking call: abandon it, and say so."""
        pool = self._pool
        if pool is None:
            return
        stuck, timed_out = pool.busy, pool.abandoned
        pool.shutdown(wait=ok and not timed_out, cancel_futures=True)
        if (not ok and stuck) or timed_out:
            why = "" if not ok else " past its timeout"
            warnings.warn(
                f"flowkit: {stuck if not ok else timed_out} thread(s) still inside a blocking "
                f"exec call{why} were abandoned; they end with the process",
                FlowkitWarning,
                stacklevel=2,
            )


class ThreadBinding:
    """A node on the thread pool: its sync exec, one item per call."""

    __slots__ = ("fn", "loop", "node", "pool")

    chunked = False
    awaits = True

    def __init__(self, pool: DaemonThreadPool, node: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self.pool, self.node, self.fn = pool, node, node.exec

    def call(self, item: Any) -> Awaitable[Any]:
        return self.loop.run_in_executor(self.pool, self.fn, item)

    def retry(self, item: Any, attempt: int) -> Awaitable[Any]:
        return self.loop.run_in_executor(self.pool, call_with_retry_index, self.fn, item, attempt)

    async def run(self, items: Sequence[Any], attempts: Sequence[int] | None) -> list[Outcome]:
        return await self.loop.run_in_executor(self.pool, run_items, self.node, items, attempts)
