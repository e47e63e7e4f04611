"""Per-node timeouts: each try of exec on an item gets ``timeout`` seconds, then fails with
``ItemTimeoutError`` (retried under the node's policy like any failure).

A node with a timeout runs on its executor through a ``TimedExecutor``, so a node without
one pays nothing. The clock starts when the call is admitted. What happens to a call past
its time depends on where it runs: a coroutine on the loop is cancelled; a thread cannot be
stopped, so its result is abandoned (the pool starts another thread while it is stuck); a
worker process or Ray task is killed, and the next call starts a fresh worker (on worker
processes the clock starts once a worker holds the item: starting one does not count).
Items travel to worker processes one at a time (unless ``chunk_size`` says otherwise: then
a chunk gets the timeout once per item in it, and every item of a chunk past it times out).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from flowkit.errors import ConfigError, ItemTimeoutError
from flowkit.executors.base import Binding, Executor, Outcome

HOW = {
    "async": "cancelled",
    "thread": "abandoned in its thread (Python cannot stop a thread; it ends with the process)",
    "process": "stopped: its worker process was killed and is replaced",
    "ray": "stopped: its Ray task was cancelled",
}


def refuse_unstoppable(
    name: str, cls: type, batched: bool, is_async: bool, has_batch_async: bool
) -> None:
    """A timeout needs a call the runner can stop: not a sync exec on the event loop."""
    sync = (not has_batch_async) if batched else (not is_async)
    if sync:
        hook = "exec_batch" if batched else "exec"
        raise ConfigError(
            f"{name}: timeout needs an exec the runner can stop, but {cls.__name__}'s sync "
            f"{hook}() would run on the event loop, where nothing can interrupt it; set "
            f"executor='thread' (or 'process'), or write `async def {hook}_async`"
        )


class TimedExecutor:
    """``inner`` with every call of a node bounded by ``seconds``."""

    def __init__(self, inner: Executor, seconds: float, name: str, kind: str) -> None:
        self.inner, self.seconds, self.name = inner, seconds, name
        self.how = HOW.get(kind, "cancelled")
        self.size = inner.size

    def bind(self, node: Any) -> Binding:
        inner = self.inner.bind(node)
        if inner.chunked:
            return TimedChunks(inner, self)
        return TimedCalls(inner, self)

    def close(self, ok: bool = True) -> None:
        self.inner.close(ok)

    def error(self, attempt: int = 0) -> ItemTimeoutError:
        return ItemTimeoutError(self.name, self.seconds, self.how, attempt)


class TimedCalls:
    """A one-item-per-call binding under a timeout."""

    __slots__ = ("inner", "timed")

    chunked = False
    awaits = True

    def __init__(self, inner: Binding, timed: TimedExecutor) -> None:
        self.inner, self.timed = inner, timed

    async def _bounded(self, call: Awaitable[Any], attempt: int) -> Any:
        cm = asyncio.timeout(self.timed.seconds)
        try:
            async with cm:
                return await call
        except TimeoutError:
            if cm.expired():
                raise self.timed.error(attempt) from None
            raise

    async def call(self, item: Any) -> Any:
        cm = asyncio.timeout(self.timed.seconds)
        try:
            async with cm:
                res = self.inner.call(item)
                return (await res) if self.inner.awaits else res
        except TimeoutError:
            if cm.expired():
                raise self.timed.error(0) from None
            raise

    def retry(self, item: Any, attempt: int) -> Awaitable[Any]:
        return self._bounded(self.inner.retry(item, attempt), attempt)

    async def run(self, items: Sequence[Any], attempts: Sequence[int] | None) -> list[Outcome]:
        """One ``exec_batch`` call (``attempts`` None), bounded by the timeout; or items one
        by one, each bounded."""
        if attempts is None:
            started = time.monotonic()
            try:
                return await self._bounded(self.inner.run(items, None), 0)
            except ItemTimeoutError as exc:
                return [(False, exc, started, time.monotonic())]
        out: list[Outcome] = []
        for item, attempt in zip(items, attempts, strict=True):
            started = time.monotonic()
            try:
                out.append((True, await self.retry(item, attempt), started, time.monotonic()))
            except Exception as exc:
                out.append((False, exc, started, time.monotonic()))
        return out


class TimedChunks:
    """A chunked binding (worker processes, Ray) under a timeout: a chunk gets the timeout
    once per item in it; past it, the worker is stopped and every item of the chunk times
    out."""

    __slots__ = ("inner", "timed")

    chunked = True
    awaits = True

    def __init__(self, inner: Binding, timed: TimedExecutor) -> None:
        self.inner, self.timed = inner, timed

    def call(self, item: Any) -> Any:
        raise TypeError("a chunked executor takes items through run()")

    async def run(self, items: Sequence[Any], attempts: Sequence[int] | None) -> list[Outcome]:
        started = time.monotonic()
        seconds = self.timed.seconds * max(1, len(items))
        if getattr(self.inner, "takes_timeout", False):  # the clock starts in the worker
            try:
                return await self.inner.run(items, attempts, timeout=seconds)  # type: ignore[call-arg]
            except TimeoutError:
                pass
        else:
            cm = asyncio.timeout(seconds)
            try:
                async with cm:
                    return await self.inner.run(items, attempts)
            except TimeoutError:
                if not cm.expired():
                    raise
        ended = time.monotonic()
        if attempts is None:  # one exec_batch call: one outcome
            return [(False, self.timed.error(), started, ended)]
        return [(False, self.timed.error(a), started, ended) for a in attempts]

    async def retry(self, item: Any, attempt: int) -> Any:
        [(ok, value, _, _)] = await self.run([item], [attempt])
        if not ok:
            raise value
        return value
