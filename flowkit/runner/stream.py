"""Results as they land: a batch node's ``post_item`` hook and ``Runner.stream``.

As each item of a node finishes (its result, a result reused from the store or the cache, or
the ``ErrorRecord`` of an item that failed for good under on_error="collect"), ``landing``'s
hook hands it to the run's stream, if any, then to the node's ``post_item_async`` or
``post_item`` (batch nodes only), in the order items finish. ``post`` still gets the whole
batch, as in PocketFlow. ``RunStream`` owns its run: it starts it, yields each
``ItemResult`` as it lands, and cancels the run if the iteration stops early.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from flowkit.events import ItemPosted, Subscriber
from flowkit.node import BaseNode
from flowkit.results import ErrorRecord, ItemResult, RunInfo
from flowkit.runner.items import Landed, await_hook, call_hook

if TYPE_CHECKING:
    from flowkit.runner.nodes import NodeRun
    from flowkit.runner.run import RunHandle

Sink = Callable[[ItemResult], None]


def landing(
    sink: Sink | None, emit: Subscriber | None, nr: NodeRun, node: BaseNode, shared: Any, path: str
) -> Landed | None:
    """The hook that hears ``node``'s items land at ``path``, or None when nobody listens."""
    hook = nr.plan.post_item
    if sink is None and hook is None:
        return None
    name, run_id = nr.name, nr.run_id
    is_async = hook == "post_item_async"

    async def landed(index: int, item: Any, result: Any) -> None:
        if sink is not None:
            if isinstance(result, ErrorRecord):
                sink(ItemResult(path, name, index, None, result))
            else:
                sink(ItemResult(path, name, index, result))
        if hook is not None:
            started = time.monotonic()
            ok = False
            try:
                if is_async:
                    await await_hook(node, hook, shared, item, result)
                else:
                    call_hook(node, hook, shared, item, result)
                ok = True
            finally:
                if emit is not None:
                    ended = time.monotonic()
                    emit(ItemPosted(started, run_id, path, name, index, ended - started, ok))

    return landed


class RunStream:
    """``runner.stream(flow, shared)``: each item's ``ItemResult`` as it lands, while the run
    goes on. Iterating starts the run; leaving the iteration early (``break``, an error, a
    cancel) cancels it and waits for it to end, as does ``aclose()`` or leaving an
    ``async with`` block. A run that fails raises its error after the items that landed.
    ``info`` is the run's ``RunInfo``; ``result`` what the flow's post returned, once done.
    """

    def __init__(self, handle: RunHandle) -> None:
        self._handle = handle
        self.info: RunInfo = handle.info
        self.result: Any = None
        self._items: AsyncGenerator[ItemResult, None] | None = None

    def __aiter__(self) -> AsyncIterator[ItemResult]:
        if self._items is None:
            self._items = self._run()
        return self._items

    async def _run(self) -> AsyncGenerator[ItemResult, None]:
        queue: asyncio.Queue[ItemResult | None] = asyncio.Queue()
        self._handle.sink = queue.put_nowait
        task: asyncio.Future[Any] = asyncio.ensure_future(self._handle)
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (landed := await queue.get()) is not None:
                yield landed
            self.result = task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop: cancel the run if it is still going, and wait for it to end."""
        if self._items is not None:
            await self._items.aclose()

    async def __aenter__(self) -> RunStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
