"""A thread pool for sync exec: blocking I/O and code that releases the GIL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flowkit.executors.base import Outcome, run_items


def thread_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flowkit")


class ThreadExecutor:
    """Runs exec on a pool of ``workers`` threads, started on first use."""

    def __init__(self, workers: int) -> None:
        self.size = workers
        self._pool: ThreadPoolExecutor | None = None

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = thread_pool(self.size)
        return self._pool

    def prepare(self, node: Any) -> Any:
        return node  # threads share the process: nothing to pickle

    def call(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """``fn(*args)`` on a pool thread: one item, without building an outcome."""
        return asyncio.get_running_loop().run_in_executor(self.pool(), fn, *args)

    async def run(
        self, prepared: Any, items: Sequence[Any], attempts: Sequence[int] | None
    ) -> list[Outcome]:
        return await self.call(run_items, prepared, items, attempts)

    def close(self, ok: bool = True) -> None:
        """After a clean run the threads are idle: wait for them, so no stray thread makes a
        later process pool fall back from fork to forkserver. After a failure or a cancel a
        thread may be stuck in a blocking call: don't wait for it."""
        if self._pool is not None:
            self._pool.shutdown(wait=ok, cancel_futures=True)
