"""The event loop as an executor: an async node's ``exec_async`` awaited on the loop, a sync
node's ``exec`` called there (the PocketFlow way: cheapest, and fine when exec only awaits)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from flowkit.engine import current_retry
from flowkit.executors.base import Outcome
from flowkit.node import defines


class LoopExecutor:
    """Runs exec on the event loop; as many calls at once as the node's limit allows."""

    size = 1_000_000

    def bind(self, node: Any) -> LoopBinding:
        return LoopBinding(node)

    def close(self, ok: bool = True) -> None:
        """Nothing to stop: the loop belongs to the caller."""


class LoopBinding:
    """A node on the loop: ``call`` is its own exec_async (awaited) or exec (called)."""

    __slots__ = ("awaits", "call", "node")

    chunked = False

    def __init__(self, node: Any) -> None:
        self.node = node
        exec_async = getattr(node, "exec_async", None)
        self.awaits = exec_async is not None
        self.call = exec_async if exec_async is not None else node.exec

    async def retry(self, item: Any, attempt: int) -> Any:
        token = current_retry.set(attempt)
        try:
            res = self.call(item)
            return (await res) if self.awaits else res
        finally:
            current_retry.reset(token)

    async def run(self, items: Sequence[Any], attempts: Sequence[int] | None) -> list[Outcome]:
        """``attempts`` None: one exec_batch_async (or exec_batch) call on all the items;
        else each item's exec in turn."""
        clock = time.monotonic
        node = self.node
        if attempts is None:
            started = clock()
            try:
                if defines(node, "exec_batch_async"):
                    result = await node.exec_batch_async(list(items))
                else:
                    result = node.exec_batch(list(items))
            except Exception as exc:
                return [(False, exc, started, clock())]
            return [(True, result, started, clock())]
        out: list[Outcome] = []
        for item, attempt in zip(items, attempts, strict=True):
            started = clock()
            try:
                out.append((True, await self.retry(item, attempt), started, clock()))
            except Exception as exc:
                out.append((False, exc, started, clock()))
        return out
