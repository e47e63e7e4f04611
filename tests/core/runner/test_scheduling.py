"""Bounded scheduling: items are pulled lazily, results come back in input order."""

from __future__ import annotations

import asyncio
import random
import tracemalloc

import flowkit as fk
from flowkit.runner import DEFAULT_PARALLEL_CAP


class Counting:
    """A lazy source that records how far ahead of completions the runner pulls."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled = 0
        self.done = 0
        self.max_ahead = 0

    def __iter__(self):
        for i in range(self.n):
            self.pulled += 1
            self.max_ahead = max(self.max_ahead, self.pulled - self.done)
            yield i


async def test_items_are_pulled_lazily_never_more_than_the_limit_ahead() -> None:
    source = Counting(500)

    class Lazy(fk.AsyncParallelBatchNode):
        max_concurrency = 7

        async def prep_async(self, shared):
            return iter(source)

        async def exec_async(self, item):
            await asyncio.sleep(0)
            source.done += 1
            return item * 2

        async def post_async(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared: dict = {}
    await fk.Runner().run_async(Lazy(), shared)
    assert shared["out"] == [i * 2 for i in range(500)]
    assert source.max_ahead == 7


async def test_async_generator_source_keeps_input_order() -> None:
    delays = [random.Random(7).random() / 500 for _ in range(60)]

    class FromAsyncGen(fk.AsyncParallelBatchNode):
        max_concurrency = 16

        async def prep_async(self, shared):
            async def gen():
                for i in range(60):
                    await asyncio.sleep(0)
                    yield i

            return gen()

        async def exec_async(self, item):
            await asyncio.sleep(delays[item])
            return item

        async def post_async(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared: dict = {}
    await fk.Runner().run_async(FromAsyncGen(), shared)
    assert shared["out"] == list(range(60))


async def test_unlimited_parallel_node_runs_ordinary_batches_all_at_once() -> None:
    in_flight = peak = 0
    everyone = asyncio.Event()

    class All(fk.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return range(300)

        async def exec_async(self, item):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            if in_flight == 300:
                everyone.set()
            await asyncio.wait_for(everyone.wait(), 5)
            in_flight -= 1

    await fk.Runner().run_async(All(), {})
    assert peak == 300


async def test_default_cap_bounds_huge_unlimited_batches() -> None:
    source = Counting(DEFAULT_PARALLEL_CAP * 3)

    class Huge(fk.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return iter(source)

        async def exec_async(self, item):
            await asyncio.sleep(0)
            source.done += 1

    await fk.Runner().run_async(Huge(), {})
    assert source.max_ahead == DEFAULT_PARALLEL_CAP


async def test_sequential_batch_nodes_run_one_item_at_a_time() -> None:
    source = Counting(50)

    class OneByOne(fk.AsyncBatchNode):
        async def prep_async(self, shared):
            return iter(source)

        async def exec_async(self, item):
            await asyncio.sleep(0)
            source.done += 1

    await fk.Runner().run_async(OneByOne(), {})
    assert source.max_ahead == 1


def test_memory_follows_the_limit_not_the_item_count() -> None:
    """Beyond the results list itself, 200 000 items cost about what 20 000 do."""

    class Noop(fk.AsyncParallelBatchNode):
        max_concurrency = 100

        async def prep_async(self, shared):
            return iter(range(shared["n"]))

        async def exec_async(self, item):
            return None

    def peak_bytes(n: int) -> int:
        tracemalloc.start()
        fk.Runner().run(Noop(), {"n": n})
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak - 8 * n  # minus one pointer per result

    small, large = peak_bytes(20_000), peak_bytes(200_000)
    assert large < small + 2_000_000


async def test_parallel_batch_flow_bounds_sub_flows_in_flight() -> None:
    source = Counting(40)

    class Step(fk.AsyncNode):
        async def exec_async(self, prep_res):
            await asyncio.sleep(0)

        async def post_async(self, shared, prep_res, exec_res):
            source.done += 1
            shared.setdefault("seen", set()).add(self.params["i"])

    class Fan(fk.AsyncParallelBatchFlow):
        max_concurrency = 5

        async def prep_async(self, shared):
            return ({"i": i} for i in source)

    shared: dict = {}
    await fk.Runner().run_async(Fan(start=Step()), shared)
    assert shared["seen"] == set(range(40))
    assert source.max_ahead == 5
