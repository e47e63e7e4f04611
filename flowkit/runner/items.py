"""The item path: one node's exec over the items its prep returned, and the other things a
run does many of at once: a batch flow's sub-flows and ``Parallel``'s branches.

``run_items`` pulls items lazily and runs at most ``workers`` at once. Each call is admitted
(a slot of the node's limit, then its named limiters), run on the node's executor (an object:
the loop, threads, processes, Ray, a micro-batcher, a user's own), then either saved or handed
to ``failures``. Executors that send work elsewhere take items in chunks; the others one by
one. Events are emitted outside exec's ``try``, and only when someone observes the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from flowkit.errors import (
    BatchInputError,
    BudgetStop,
    ConfigError,
    FlowStructureError,
    GraphError,
    StoreError,
)
from flowkit.events import BatchStarted, CallEnded, CallStarted, PassEnded, Subscriber
from flowkit.executors.base import ChunkSizer, Outcome
from flowkit.flow import AsyncFlow, AsyncParallelBatchFlow, BatchFlow, Flow, Parallel
from flowkit.node import AsyncNode, BaseNode, node_options
from flowkit.runner.current import current_call
from flowkit.runner.failures import Failures
from flowkit.runner.nodes import DEFAULT_PARALLEL_CAP, NodeRun

if TYPE_CHECKING:
    from flowkit.runner.checkpoint import Checkpoint
    from flowkit.runner.memory import MemoryGuard

Landed = Callable[[int, Any, Any], Awaitable[None]]
"""Hears each item as it lands: ``(index, item, result or ErrorRecord)``."""


async def run_items(
    nr: NodeRun,
    node: BaseNode,
    prep_res: Any,
    path: str,
    ck: Checkpoint | None,
    guard: MemoryGuard | None,
    landed: Landed | None = None,
) -> Any:
    """exec for what ``node``'s prep returned: each item of a batch, or prep's result once.
    ``landed`` (post_item, a stream) hears each item as it finishes, in that order."""
    plan = nr.plan
    counts = nr.counts(path)
    source = items_of(prep_res, node, "items") if plan.batch else Source(iter((prep_res,)), None, 1)
    if source.size is None or counts.total is None:
        counts.total = None
    else:
        counts.total += source.size
    if nr.emit is not None:
        nr.emit(BatchStarted(time.monotonic(), nr.run_id, path, nr.name, source.size))
    workers = plan.workers if plan.batch else 1
    if source.size is not None:
        if source.size == 0:
            return []
        workers = min(workers, source.size)
    results: list[Any] = []
    binding = nr.bind(node, path)
    recall = ck.recall if ck is not None else None
    save = ck.save if ck is not None else None
    failures = None

    async def settle(index: int, item: Any, exc: Exception, key: str) -> Any:
        nonlocal failures
        if failures is None:
            failures = Failures(nr, node, path)
        retry = None if nr.batcher is not None else binding.retry
        return await failures.settle(index, item, exc, retry, ck, key)

    it = source.it
    if not binding.chunked:
        # Bound once: these run once per item.
        call, awaits = binding.call, binding.awaits
        try_enter, enter, leave = nr.try_enter, nr.enter, nr.leave
        emit = nr.emit
        if nr.batcher is not None:  # a micro-batcher admits and reports whole batches itself
            try_enter, leave, emit = _true, _nothing, None
        run_id, name, call_ids = nr.run_id, nr.name, nr.call_ids
        clock = time.monotonic

        async def worker(_: int) -> None:
            call_id = -1
            pulled = 0
            while True:
                pulled += 1
                if not pulled & 255:
                    # An exec that never suspends would hold the loop for the whole batch:
                    # yield every 256 items so other tasks (progress, other nodes) run.
                    await asyncio.sleep(0)
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
                    taken = await source.take(1)
                    if not taken:
                        return
                    item = taken[0]
                index = len(results)
                results.append(None)
                key: str | None = ""
                if recall is not None:
                    key = recall(item, results, index)
                    if key is None:
                        if landed is not None:
                            await landed(index, item, results[index])
                        continue
                if not try_enter():
                    await enter(index, 1, path)
                if emit is not None:
                    call_id = -1
                    if nr.calls_left > 0:  # the observers want this call's events
                        nr.calls_left -= 1
                        call_id = next(call_ids)
                    current_call.set((index, call_id))
                    if call_id >= 0:
                        emit(CallStarted(clock(), run_id, path, name, index, call_id))
                failed = None
                try:
                    res = call(item)
                    if awaits:
                        res = await res
                except Exception as exc:
                    failed = exc
                finally:
                    leave()
                if emit is not None and call_id >= 0:
                    emit(CallEnded(clock(), run_id, path, name, index, call_id, failed is None))
                if failed is not None:
                    res = await settle(index, item, failed, key or "")
                    if ck is None:
                        counts.items += 1
                elif save is not None:
                    save(key or "", index, res)  # counted done once handed to the writer
                else:
                    counts.items += 1
                results[index] = res
                if landed is not None:
                    await landed(index, item, res)

    else:
        sizer = ChunkSizer(plan.chunk_size, source.size, workers)

        async def worker(_: int) -> None:
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
                if recall is not None:
                    keys = [recall(item, results, first + j) for j, item in enumerate(pulled)]
                    todo = [j for j, key in enumerate(keys) if key is not None]
                    if landed is not None:
                        for j, key in enumerate(keys):
                            if key is None:
                                await landed(first + j, pulled[j], results[first + j])
                    if not todo:
                        continue
                chunk = [pulled[j] for j in todo]
                await nr.enter(first, len(chunk), path)
                try:
                    sent = time.monotonic()
                    outcomes: list[Outcome] = await binding.run(chunk, [0] * len(chunk))
                    sizer.observe(len(chunk), time.monotonic() - sent)
                finally:
                    nr.leave()
                for j, (ok, value, started, ended) in zip(todo, outcomes, strict=True):
                    index = first + j
                    if started > sent:
                        nr.waited(path, index, -1, "worker", sent, started)
                    nr.span(path, index, started, ended, ok)
                    if not ok:
                        value = await settle(index, pulled[j], value, keys[j] or "")
                        if ck is None:
                            counts.items += 1
                    elif save is not None:
                        save(keys[j] or "", index, value)
                    else:
                        counts.items += 1
                    results[index] = value
                    if landed is not None:
                        await landed(index, pulled[j], value)

    try:
        await run_workers(workers, worker)
    except BaseException:
        if ck is not None:
            with contextlib.suppress(StoreError):  # the workers' own error is the one to raise
                ck.flush()
        raise
    if ck is not None:
        ck.close()
    return results if plan.batch else results[0]


Step = Callable[[BaseNode, Any, str], Awaitable[Any]]
"""Runs one node or flow in the run: ``(node, shared, parent path) -> its action``."""


async def run_flow(
    flow: Flow,
    shared: Any,
    path: str,
    step: Step,
    max_steps: int | None,
    emit: Subscriber | None = None,
    run_id: str = "",
) -> Any:
    """A flow's prep, its steps (once, or once per params dict of a batch flow, at most its
    ``max_concurrency`` at once for a parallel one) and its post. ``emit`` hears how many
    passes a batch flow has and when each ends."""
    is_async = isinstance(flow, AsyncFlow)
    if is_async:
        prep_res = await await_hook(flow, "prep_async", shared)
    else:
        prep_res = call_hook(flow, "prep", shared)
    if isinstance(flow, BatchFlow):
        prep_res = prep_res or []  # PocketFlow's post sees [] for a prep that returned None
        source = items_of(prep_res, flow, "params dicts")
        if emit is not None:
            emit(BatchStarted(time.monotonic(), run_id, path, flow.name, source.size))
        workers = 1
        if isinstance(flow, AsyncParallelBatchFlow):
            workers = node_options(flow, warn=False).max_concurrency or DEFAULT_PARALLEL_CAP

        async def one(params: Any) -> None:
            if not isinstance(params, Mapping):
                raise BatchInputError(
                    f"{flow.name}: prep must yield params dicts, got "
                    f"{type(params).__name__} {params!r:.80}"
                )
            ok = False
            try:
                await _steps(flow, shared, {**flow.params, **params}, path, step, max_steps)
                ok = True
            finally:
                if emit is not None:
                    emit(PassEnded(time.monotonic(), run_id, path, flow.name, ok))

        await _each(source.take, source.size, workers, one)
        exec_res = None
    else:
        exec_res = await _steps(flow, shared, None, path, step, max_steps)
    if is_async:
        return await await_hook(flow, "post_async", shared, prep_res, exec_res)
    return call_hook(flow, "post", shared, prep_res, exec_res)


async def _steps(
    flow: Flow,
    shared: Any,
    params: dict[str, Any] | None,
    path: str,
    step: Step,
    max_steps: int | None,
) -> Any:
    """One pass of ``flow``: from its start node, following each node's action."""
    curr: BaseNode | None = copy.copy(flow.first_node())
    p = params or {**flow.params}
    last_action = None
    steps = 0
    while curr is not None:
        steps += 1
        if not isinstance(curr, BaseNode):
            raise GraphError(
                f"{flow.name}: the flow reached {curr!r} ({type(curr).__name__}), which is "
                f"not a node or flow (after action {last_action!r}); wire a node there"
            )
        if max_steps is not None and steps > max_steps:
            raise FlowStructureError(
                f"{flow.name}: more than {max_steps} steps (the last action was "
                f"{last_action!r}); a cycle may never end. Raise max_steps if it is meant "
                "to run longer"
            )
        curr.set_params(p)
        last_action = await step(curr, shared, path)
        curr = copy.copy(flow.get_next_node(curr, last_action))
    return last_action


async def run_parallel(par: Parallel, shared: Any, path: str, step: Step) -> Any:
    """``Parallel``'s branches at once, each on its own view of ``shared``, then the join."""
    if not isinstance(shared, dict):
        raise ConfigError(f"{par.name}: Parallel needs shared to be a dict")
    prep_res = await await_hook(par, "prep_async", shared)
    base = shared
    views: dict[str, dict[str, Any]] = {}
    branches = iter(enumerate(par.branches))

    async def take(n: int) -> list[Any]:
        return list(itertools.islice(branches, n))

    async def branch(pair: tuple[int, BaseNode]) -> None:
        i, node = pair
        view = dict(base)
        views[par.branch_names[i]] = view
        node = copy.copy(node)
        node.set_params({**par.params})
        await step(node, view, path)

    cap = node_options(par, warn=False).max_concurrency or len(par.branches)
    await _each(take, len(par.branches), cap, branch)
    updates = {
        name: {k: v for k, v in view.items() if k not in base or base[k] is not v}
        for name, view in ((n, views[n]) for n in par.branch_names)
    }
    par.join(shared, updates)
    return await await_hook(par, "post_async", shared, prep_res, None)


async def _each(
    take: Callable[[int], Awaitable[list[Any]]],
    size: int | None,
    workers: int,
    fn: Callable[[Any], Awaitable[None]],
) -> None:
    """``fn(item)`` for every item ``take`` gives, at most ``workers`` at once."""
    if size is not None:
        workers = min(workers, size)

    async def worker(_: int) -> None:
        while True:
            pulled = await take(1)
            if not pulled:
                return
            await fn(pulled[0])

    await run_workers(workers, worker)


async def await_hook(node: BaseNode, name: str, *args: Any) -> Any:
    """Await ``node``'s async hook ``name``; an error gets a note naming the node and hook."""
    try:
        return await getattr(node, name)(*args)
    except Exception as exc:
        _note(exc, node, name)
        raise


def call_hook(node: BaseNode, name: str, *args: Any) -> Any:
    """Call ``node``'s sync hook ``name``; an error gets a note naming the node and hook."""
    try:
        return getattr(node, name)(*args)
    except Exception as exc:
        _note(exc, node, name)
        raise


def _note(exc: BaseException, node: BaseNode, hook: str) -> None:
    if not any(n.startswith("flowkit:") for n in getattr(exc, "__notes__", ())):
        exc.add_note(f"flowkit: raised in {node.name}.{hook}")


class Source:
    """Items from a list, generator or async generator, pulled lazily by the workers.

    ``it`` is the sync iterator (None for an async source): workers may pull from it
    directly, which is cheaper than ``take``.
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


async def run_workers(workers: int, worker: Callable[[int], Awaitable[None]]) -> None:
    """Run ``worker(k)`` for k in range(workers) as tasks; the first failure cancels the
    others and is raised. One worker runs in the caller's task. A spent budget
    (``BudgetStop``) cancels nothing: the others finish their calls in flight and stop at
    their next item, then it is raised."""
    if workers <= 1:
        await worker(0)
        return
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = [
        loop.create_task(worker(k))  # type: ignore[arg-type]
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
    if failed is not None and isinstance(failed.exception(), BudgetStop):
        try:
            await asyncio.wait(tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        errors = [e for t in tasks if not t.cancelled() and (e := t.exception()) is not None]
        raise next((e for e in errors if not isinstance(e, BudgetStop)), errors[0])
    if failed is not None:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise failed.exception()  # type: ignore[misc]


def _true() -> bool:
    return True


def _nothing() -> None:
    return None
