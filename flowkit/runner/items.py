"""The item loops: exec over every item of a node's batch, at most ``workers`` in flight.

One loop per way of running exec: single items (on the loop or a thread, the fast path),
chunks (worker processes, Ray) and micro-batches (exec_batch). Each admits its calls through
``Admission``, checkpoints through ``Checkpoint`` and hands failures to ``Failures``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from flowkit.context import current_retry
from flowkit.events import Event
from flowkit.executors import call_with_retry_index
from flowkit.node import AsyncNode, BaseNode
from flowkit.runner.admission import Admission
from flowkit.runner.context import current_item
from flowkit.runner.failures import Failures
from flowkit.runner.lanes import ChunkSizer, Source, items_of, supervise

if TYPE_CHECKING:
    from flowkit.runner.plan import Plan
    from flowkit.runner.state import RunState


async def exec_items(run: RunState, plan: Plan, node: BaseNode, prep_res: Any, path: str) -> Any:
    """exec for what prep returned: each item of a batch, or prep's result once."""
    if not plan.batch:
        source = Source(iter((prep_res,)), None, 1)
    else:
        source = items_of(prep_res, node, "items")
    run.event("batch_start", path, plan.name, items=source.size)
    out = await map_items(run, plan, node, source, plan.workers if plan.batch else 1, path)
    return out if plan.batch else out[0]


async def map_items(
    run: RunState, plan: Plan, node: BaseNode, source: Source, workers: int, path: str
) -> list[Any]:
    """Run exec over every item of ``source`` with at most ``workers`` in flight."""
    if source.size is not None:
        if source.size == 0:
            return []
        workers = min(workers, source.size)
    admission = Admission(run, plan, path)
    failures = Failures(run, plan, node, admission)
    if plan.batcher is not None:
        return await _map_batched(run, plan, node, source, workers, failures)
    if plan.executor in ("process", "ray"):
        return await _map_chunked(run, plan, node, source, workers, failures)
    results: list[Any] = []
    stats = plan.stats
    emit, run_id, name = run.emit, run.info.run_id, plan.name
    ck = run.checkpoint(plan, node, path)
    # Bound once: this loop runs once per item.
    recall = ck.recall if ck is not None else None
    save = ck.save if ck is not None else None
    try_enter, enter, leave = admission.try_enter, admission.enter, admission.leave
    settle = failures.settle
    guard = run.guard
    it = source.it
    call: Callable[[Any], Any]
    retry_call: Callable[[Any, int], Awaitable[Any]]
    if plan.executor == "thread":
        loop, pool, fn = run.loop, run.threads.pool(), node.exec

        def call(item: Any) -> Awaitable[Any]:
            return loop.run_in_executor(pool, fn, item)

        def retry_call(item: Any, attempt: int) -> Awaitable[Any]:
            return loop.run_in_executor(pool, call_with_retry_index, fn, item, attempt)

        awaitable = True
    else:
        call = node.exec_async if isinstance(node, AsyncNode) else node.exec
        awaitable = plan.is_async
        retry_call = functools.partial(_retry_here, call, awaitable)
    if plan.skip_exec:
        call = _no_exec
        awaitable = False

    async def lane(_: int) -> None:
        key: str | None = ""
        done = 0
        while True:
            done += 1
            if not done & 255:
                await asyncio.sleep(0)  # let other tasks run even when exec never suspends
            if guard is not None and guard.engaged:
                await guard.admit()
            if ck is not None and ck.paused:
                await ck.drained()  # the store's buffer is full: backpressure
            if it is not None:
                try:
                    item = next(it)
                except StopIteration:
                    return
            else:
                pulled = await source.take(1)
                if not pulled:
                    return
                item = pulled[0]
            index = len(results)
            results.append(None)
            if recall is not None:
                key = recall(item, results, index)
                if key is None:
                    continue
            if emit is not None:
                current_item.set(index)
            if not try_enter():
                await enter(index)
            failed = None
            try:
                if emit is not None:
                    emit(Event("item_start", time.monotonic(), run_id, path, name, index))
                res = call(item)
                if awaitable:
                    res = await res
            except Exception as exc:
                failed = exc
            finally:
                leave()
                if emit is not None:
                    ended = time.monotonic()
                    emit(Event("item_end", ended, run_id, path, name, index, failed is None))
            if failed is not None:
                res = await settle(index, item, failed, retry_call, ck, key or "")
            elif save is not None:
                save(key or "", index, res)
            results[index] = res
            stats.items += 1

    await supervise(workers, lane, ck)
    return results


async def _map_chunked(
    run: RunState, plan: Plan, node: BaseNode, source: Source, workers: int, failures: Failures
) -> list[Any]:
    """Like ``map_items`` for worker processes and Ray: items travel in adaptive chunks."""
    executor = run.executor(plan.executor)
    prepared = executor.prepare(node)
    results: list[Any] = []
    sizer = ChunkSizer(plan.chunk_size, source.size, workers)
    admission, stats, path = failures.admission, plan.stats, failures.path

    async def retry_call(item: Any, attempt: int) -> Any:
        [(ok, value, _, _)] = await executor.run(prepared, [item], [attempt])
        if not ok:
            raise value
        return value

    ck = run.checkpoint(plan, node, path)
    guard = run.guard

    async def lane(_: int) -> None:
        while True:
            if guard is not None and guard.engaged:
                await guard.admit()
            if ck is not None and ck.paused:
                await ck.drained()
            pulled = await source.take(sizer.next())
            if not pulled:
                return
            first = len(results)
            results.extend([None] * len(pulled))
            todo = list(range(len(pulled)))
            keys: list[str | None] = [""] * len(pulled)
            if ck is not None:
                keys = [ck.recall(item, results, first + j) for j, item in enumerate(pulled)]
                todo = [j for j, key in enumerate(keys) if key is not None]
                if not todo:
                    continue
            chunk = [pulled[j] for j in todo]
            await admission.enter(first, len(chunk))
            try:
                t0 = time.perf_counter()
                sent = time.monotonic()
                outcomes = await executor.run(prepared, chunk, [0] * len(chunk))
                sizer.observe(len(chunk), time.perf_counter() - t0)
            finally:
                admission.leave()
            for j, (ok, value, started, ended) in zip(todo, outcomes, strict=True):
                index = first + j
                if started > sent:
                    run.waited(plan, path, index, "worker", sent, started)
                admission.span(index, started, ended, ok)
                if not ok:
                    value = await failures.settle(
                        index, pulled[j], value, retry_call, ck, keys[j] or ""
                    )
                elif ck is not None:
                    ck.save(keys[j] or "", index, value)
                results[index] = value
            stats.items += len(chunk)

    await supervise(workers, lane, ck)
    return results


async def _map_batched(
    run: RunState, plan: Plan, node: BaseNode, source: Source, workers: int, failures: Failures
) -> list[Any]:
    """Like ``map_items`` for nodes with exec_batch: items go through the node's batcher."""
    batcher = plan.batcher
    assert batcher is not None
    results: list[Any] = []
    path = failures.path
    ck = run.checkpoint(plan, node, path)
    stats = plan.stats

    async def lane(_: int) -> None:
        while True:
            if ck is not None and ck.paused:
                await ck.drained()
            pulled = await source.take(1)
            if not pulled:
                return
            item = pulled[0]
            index = len(results)
            results.append(None)
            key: str | None = ""
            if ck is not None:
                key = ck.recall(item, results, index)
                if key is None:
                    continue
            try:
                res = await batcher.submit(node, item, path)
            except Exception as exc:  # the batcher has already retried it
                res = await failures.settle(index, item, exc, None, ck, key or "")
            else:
                if ck is not None:
                    ck.save_outcome(key or "", index, res)
            results[index] = res
            stats.items += 1

    await supervise(workers, lane, ck)
    return results


async def _retry_here(call: Callable[[Any], Any], awaitable: bool, item: Any, attempt: int) -> Any:
    """Another try on the event loop, with ``cur_retry`` set for it."""
    token = current_retry.set(attempt)
    try:
        res = call(item)
        return (await res) if awaitable else res
    finally:
        current_retry.reset(token)


def _no_exec(item: Any) -> Any:
    """What exec gives with no tries left (PocketFlow's ``max_retries=0``)."""
    return None
