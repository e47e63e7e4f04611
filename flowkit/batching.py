"""Micro-batching: single items from every caller of a node become batched exec calls.

A node that defines ``exec_batch(items)`` or ``exec_batch_async(items)`` gets one ``Batcher``
for the whole run. Callers (the items of a batch node, or single items from many concurrent
branches of a parallel flow) submit items and await their own result; the batcher sends a
batch when ``batch_size`` items are waiting or ``batch_wait_ms`` after the first one arrived.
A failing batch is retried per the node's policy, then split in halves until the bad items
are isolated, so their neighbours still succeed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from flowkit.errors import BatchResultError
from flowkit.retry import Retry, retry_failed

__all__ = ["BatchCall", "BatchResultError", "Batcher", "Owner", "RetryHook"]

BatchCall = Callable[[Any, list[Any], list[float], list[str]], Awaitable[list[Any]]]
"""Runs one batch on the node's executor, under its limits: ``(node, items, queued, paths) ->
results``, where ``queued`` holds when each item joined the queue (``time.monotonic()``) and
``paths`` where in the graph each item came from."""
RetryHook = Callable[[list[str], int, float, Exception], None]
"""Called before a failed batch is tried again: ``(paths of its items, attempt, wait, error)``."""
Entry = tuple[Any, Any, "asyncio.Future[Any]", float, str]
"""A queued item: its node, the item, its result's future, when it was queued, its path."""


class Owner(Protocol):
    """Who owns the batcher's tasks and timers (the run's task group)."""

    def start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def call_later(self, delay: float, fn: Callable[[], None]) -> asyncio.Handle: ...


class Batcher:
    """Collects items for one node and runs them ``batch_size`` at a time."""

    def __init__(
        self,
        name: str,
        batch_size: int,
        wait_s: float,
        call: BatchCall,
        policy: Retry | None,
        on_retry: RetryHook,
        sleep: Callable[[float], Awaitable[None]],
        owner: Owner,
    ) -> None:
        self.name, self.size, self.wait_s = name, batch_size, wait_s
        self._call, self._policy, self._on_retry, self._sleep = call, policy, on_retry, sleep
        self._owner = owner
        self._pending: list[Entry] = []
        self._timer: asyncio.Handle | None = None
        self.batches = 0

    async def submit(self, node: Any, item: Any, path: str = "") -> Any:
        """Queue ``item`` (to run on ``node``, reached at ``path``) and wait for its result."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = (node, item, fut, time.monotonic(), path)
        self._pending.append(entry)
        if len(self._pending) >= self.size:
            self._flush(full_only=True)
        elif self._timer is None:
            self._timer = self._owner.call_later(self.wait_s, self._on_timer)
        try:
            return await fut
        except asyncio.CancelledError:
            if entry in self._pending:
                self._pending.remove(entry)
            raise

    def _on_timer(self) -> None:
        self._timer = None
        self._flush(full_only=False)

    def _flush(self, *, full_only: bool) -> None:
        while self._pending and (len(self._pending) >= self.size or not full_only):
            batch, self._pending = self._pending[: self.size], self._pending[self.size :]
            self._owner.start(self._run(batch))
        if self._pending and self._timer is None:
            self._timer = self._owner.call_later(self.wait_s, self._on_timer)

    async def _run(self, batch: list[Entry], first: bool = True) -> None:
        live = [entry for entry in batch if not entry[2].done()]
        if not live:
            return
        try:
            await self._attempts(live, first)
        except asyncio.CancelledError:
            for entry in live:
                entry[2].cancel()
            raise

    async def _attempts(self, live: list[Entry], first: bool) -> None:
        node = live[0][0]
        items = [entry[1] for entry in live]
        paths = [entry[4] for entry in live]

        async def once(attempt: int) -> list[Any] | BatchResultError:
            nonlocal first
            self.batches += 1
            queued = [entry[3] for entry in live] if first else []
            first = False  # a retry or a half has already been counted as waiting
            results = await self._call(node, items, queued, paths)
            if not isinstance(results, list | tuple) or len(results) != len(items):
                got = len(results) if isinstance(results, list | tuple) else type(results)
                return BatchResultError(  # a broken contract: retrying or splitting hides it
                    f"{self.name}: exec_batch returned {got} results for {len(items)} "
                    "items; return one result per item, in order"
                )
            return list(results)

        try:
            outcome: list[Any] | BatchResultError | Exception = await once(0)
        except Exception as exc:
            ok, outcome, _ = await retry_failed(
                exc, once, self._policy, self._sleep, lambda a, w, e: self._on_retry(paths, a, w, e)
            )
            if not ok:
                assert isinstance(outcome, Exception)
                if len(live) == 1:
                    if not live[0][2].done():
                        live[0][2].set_exception(outcome)
                    return
                half = len(live) // 2  # isolate the bad item(s); neighbours still succeed
                await asyncio.gather(
                    self._run(live[:half], first=False), self._run(live[half:], first=False)
                )
                return
        if isinstance(outcome, Exception):
            for entry in live:
                if not entry[2].done():
                    entry[2].set_exception(outcome)
            return
        for (_, _, fut, _, _), result in zip(live, outcome, strict=True):
            if not fut.done():
                fut.set_result(result)
