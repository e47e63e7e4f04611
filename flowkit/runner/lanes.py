"""Item lanes: a batch's items pulled lazily by a fixed number of worker tasks.

``Source`` wraps what prep returned (a list, a generator, an async generator); ``drive`` and
``supervise`` run the lanes, the first failure cancelling the others; ``ChunkSizer`` picks how
many items travel to a worker process at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from flowkit.errors import BatchInputError, StoreError
from flowkit.node import AsyncNode, BaseNode

if TYPE_CHECKING:
    from flowkit.runner.checkpoint import Checkpoint


class Source:
    """Items from a list, generator or async generator, pulled lazily by the workers.

    ``it`` is the sync iterator (None for an async source): lanes may pull from it directly,
    which is cheaper than ``take``.
    """

    __slots__ = ("ait", "it", "lock", "size")

    def __init__(self, it: Iterator[Any] | None, ait: AsyncIterator[Any] | None, size: int | None):
        self.it, self.ait, self.size = it, ait, size
        self.lock = asyncio.Lock() if ait is not None else None

    async def take(self, n: int) -> list[Any]:
        if self.it is not None:
            return list(itertools.islice(self.it, n))
        assert self.ait is not None and self.lock is not None
        out: list[Any] = []
        async with self.lock:
            for _ in range(n):
                try:
                    out.append(await self.ait.__anext__())
                except StopAsyncIteration:
                    break
        return out


def items_of(prep_res: Any, owner: BaseNode, what: str) -> Source:
    """The items a batch node's or batch flow's prep returned, as a ``Source``."""
    if prep_res is None:
        return Source(iter(()), None, 0)
    if hasattr(prep_res, "__aiter__"):
        return Source(None, prep_res.__aiter__(), None)
    try:
        it = iter(prep_res)
    except TypeError:
        if not prep_res:  # 0 or False: PocketFlow's `items or []` runs nothing
            return Source(iter(()), None, 0)
        hook = "prep_async" if isinstance(owner, AsyncNode) else "prep"
        raise BatchInputError(
            f"{owner.name}.{hook} returned {type(prep_res).__name__} {prep_res!r:.80}, but a "
            f"batch needs an iterable of {what} (a list, a generator or an async generator)"
        ) from None
    size = len(prep_res) if hasattr(prep_res, "__len__") else None
    return Source(it, None, size)


async def drive(
    source: Source | Iterator[Any], workers: int, fn: Callable[[int, Any], Awaitable[None]]
) -> None:
    """Call ``fn(index, item)`` for every item, with at most ``workers`` calls in flight."""
    if not isinstance(source, Source):
        source = Source(source, None, None)
    if source.size is not None:
        workers = min(workers, source.size)
    counter = itertools.count()
    it = source.it

    if it is not None:

        async def lane(_: int) -> None:
            for item in it:
                await fn(next(counter), item)

    else:

        async def lane(_: int) -> None:
            while True:
                batch = await source.take(1)
                if not batch:
                    return
                await fn(next(counter), batch[0])

    await supervise(workers, lane)


async def supervise(
    workers: int, lane: Callable[[int], Awaitable[None]], ck: Checkpoint | None = None
) -> None:
    """Run ``workers`` lanes; the first failure cancels the others and is raised.

    With a checkpoint, every result saved is handed to the store before this returns or
    raises.
    """
    try:
        await run_lanes(workers, lane)
    except BaseException:
        if ck is not None:
            with contextlib.suppress(StoreError):  # the lanes' own error is the one to raise
                ck.flush()
        raise
    if ck is not None:
        ck.close()


async def run_lanes(workers: int, lane: Callable[[int], Awaitable[None]]) -> None:
    """Run ``lane(k)`` for k in range(workers) as tasks; cancel all when one fails."""
    if workers <= 1:
        await lane(0)
        return
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = [
        loop.create_task(lane(k))  # type: ignore[arg-type]
        for k in range(workers)
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception()), None)
    if failed is not None:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise failed.exception()  # type: ignore[misc]


class ChunkSizer:
    """Picks how many items travel to a worker at once: about 20 ms of work per trip."""

    TARGET = 0.02
    MAX = 256

    def __init__(self, fixed: int | None, size: int | None, workers: int) -> None:
        self.fixed, self.size, self.workers = fixed, size, workers
        self.sent = 0
        self.per_item: float | None = None

    def next(self) -> int:
        if self.fixed:
            n = self.fixed
        elif self.per_item is None:
            n = 1
        else:
            n = max(1, min(self.MAX, int(self.TARGET / max(self.per_item, 1e-7))))
            if self.size is not None:  # leave work for every lane near the end
                n = min(n, max(1, (self.size - self.sent) // (2 * self.workers)))
        self.sent += n
        return n

    def observe(self, count: int, seconds: float) -> None:
        sample = seconds / count
        self.per_item = sample if self.per_item is None else 0.7 * self.per_item + 0.3 * sample
