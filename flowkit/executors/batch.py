"""Micro-batching as an executor: single items from every caller of a node become batched
``exec_batch`` calls on the node's own executor (the loop, threads, processes, replicas).

A node that defines ``exec_batch(items)`` or ``exec_batch_async(items)`` gets one
``MicroBatcher`` for the whole run. Callers (the items of a batch node, or single items from
many concurrent branches of a parallel flow) submit items and await their own result; a
batch goes when ``batch_size`` items wait or ``batch_wait`` seconds after the first one
arrived. Each batch is admitted as one call (the node's limit counts batches in flight). A
failing batch is retried per the node's policy, then split in halves until the bad items are
isolated, so their neighbours still succeed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from flowkit.errors import BatchResultError
from flowkit.executors.base import Binding, Executor, Outcome
from flowkit.retry import Retry, retry_failed

Entry = tuple[Any, Any, "asyncio.Future[Any]", float, str]
"""A queued item: its node, the item, its result's future, when it was queued, its path."""


class BatchHost(Protocol):
    """What a micro-batcher needs from the run, for its node: admission of each batch, waits
    and call spans recorded per item path, retries counted, and an owner for its tasks."""

    async def enter(self, index: int, requests: int) -> None: ...

    def leave(self) -> None: ...

    def waited(
        self, path: str, index: int, call: int, what: str, started: float, ended: float
    ) -> None: ...

    def spans(self, paths: Sequence[str], started: float, ended: float, ok: bool) -> None: ...

    def retried(self, paths: Sequence[str], attempt: int, wait: float, exc: Exception) -> None: ...

    def start_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def call_later(self, delay: float, fn: Callable[[], None]) -> asyncio.Handle: ...


class MicroBatcher:
    """Collects items for one node and runs them ``batch_size`` at a time on ``inner``."""

    def __init__(
        self,
        name: str,
        batch_size: int,
        wait_s: float,
        inner: Executor,
        host: BatchHost,
        policy: Retry | None,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.name, self.size, self.wait_s = name, batch_size, wait_s
        self.inner, self.host, self.policy, self.sleep = inner, host, policy, sleep
        self._pending: list[Entry] = []
        self._timer: asyncio.Handle | None = None
        # Bindings per node copy; the copy is held so its id cannot name another object.
        self._bound: dict[int, tuple[Any, Binding]] = {}

    def bind(self, node: Any, path: str) -> BatchBinding:
        return BatchBinding(self, node, path)

    async def submit(self, node: Any, item: Any, path: str) -> Any:
        """Queue ``item`` (to run on ``node``, reached at ``path``) and wait for its result."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = (node, item, fut, time.monotonic(), path)
        self._pending.append(entry)
        if len(self._pending) >= self.size:
            self._flush(full_only=True)
        elif self._timer is None:
            self._timer = self.host.call_later(self.wait_s, self._on_timer)
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
            self.host.start_task(self._run(batch))
        if self._pending and self._timer is None:
            self._timer = self.host.call_later(self.wait_s, self._on_timer)

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
        except BaseException as exc:  # not an error of the batch (a spent budget): its items
            for entry in live:  # each raise it, where they wait for their results
                if not entry[2].done():
                    entry[2].set_exception(exc)

    async def _call(self, node: Any, items: list[Any], queued: list[float], paths: list[str]):
        """One exec_batch call, admitted as one call of the node."""
        host = self.host
        called = time.monotonic()
        for since, path in zip(queued, paths, strict=False):  # queued until its batch's call
            host.waited(path, -1, -1, "batch", since, called)
        await host.enter(-1, len(items))
        started, ok = time.monotonic(), False
        try:
            held = self._bound.get(id(node))
            if held is None:
                held = self._bound[id(node)] = (node, self.inner.bind(node))
            outcome: Outcome
            [outcome] = await held[1].run(items, None)
            done, result, started, _ = outcome
            if not done:
                raise result
            ok = True
            return result
        finally:
            host.leave()
            host.spans(paths, started, time.monotonic(), ok)

    async def _attempts(self, live: list[Entry], first: bool) -> None:
        node = live[0][0]
        items = [entry[1] for entry in live]
        paths = [entry[4] for entry in live]

        async def once(attempt: int) -> list[Any] | BatchResultError:
            nonlocal first
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
                exc,
                once,
                self.policy,
                self.sleep,
                lambda a, w, e: self.host.retried(paths, a, w, e),
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


class BatchBinding:
    """A node copy at one path, feeding the node's micro-batcher one item per call. Its
    calls are admitted by the batcher, per batch, not per item."""

    __slots__ = ("batcher", "node", "path")

    chunked = False
    awaits = True

    def __init__(self, batcher: MicroBatcher, node: Any, path: str) -> None:
        self.batcher, self.node, self.path = batcher, node, path

    def call(self, item: Any) -> Awaitable[Any]:
        return self.batcher.submit(self.node, item, self.path)

    def retry(self, item: Any, attempt: int) -> Awaitable[Any]:
        raise TypeError("a micro-batched item is retried with its batch")

    async def run(self, items: Sequence[Any], attempts: Sequence[int] | None) -> list[Outcome]:
        raise TypeError("a micro-batched node takes its items one call at a time")
