"""Micro-batching: single items from many callers become a few batched exec calls."""

from __future__ import annotations

import asyncio
import os

import pytest

import flowkit as fk
from flowkit.errors import BatchResultError


class Embed(fk.Node):
    """Embeds one text per sub-flow; the runner batches across sub-flows."""

    batch_size = 25
    batch_wait_ms = 2000  # only full batches go early: the counts below are exact
    calls: list[int] = []

    def prep(self, shared):
        return self.params["text"]

    async def exec_batch_async(self, texts):
        Embed.calls.append(len(texts))
        await asyncio.sleep(0)
        return [len(t) for t in texts]

    def post(self, shared, prep_res, exec_res):
        shared[prep_res] = exec_res


class PerText(fk.AsyncParallelBatchFlow):
    async def prep_async(self, shared):
        return [{"text": "x" * i} for i in range(100)]


async def test_items_from_100_parallel_sub_flows_become_4_calls() -> None:
    Embed.calls = []
    shared: dict = {}
    await fk.Runner().run_async(PerText(start=Embed()), shared)
    assert Embed.calls == [25, 25, 25, 25]
    assert shared == {"x" * i: i for i in range(100)}


class Doubles(fk.BatchNode):
    batch_size = 10
    batch_wait_ms = 2000

    def __init__(self, bad: frozenset[int] = frozenset(), **options) -> None:
        super().__init__(**options)
        self.bad = bad
        self.calls: list[list[int]] = []

    def prep(self, shared):
        return list(range(shared.get("n", 40)))

    def exec_batch(self, items):
        self.calls.append(list(items))
        if self.bad & set(items):
            raise ValueError(f"bad items in {items}")
        return [i * 2 for i in items]

    def post(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


async def test_a_batch_node_calls_exec_batch_with_full_batches_in_order() -> None:
    node = Doubles()
    shared: dict = {}
    await fk.Runner().run_async(node, shared)
    assert shared["out"] == [i * 2 for i in range(40)]
    assert [len(c) for c in node.calls] == [10, 10, 10, 10]


async def test_a_failing_batch_is_split_until_the_bad_item_is_isolated() -> None:
    node = Doubles(frozenset({13}), on_error="collect")
    shared: dict = {}
    await fk.Runner().run_async(node, shared)
    out = shared["out"]
    assert isinstance(out[13], fk.ErrorRecord)
    assert out[13].error_type == "ValueError"
    assert [v for i, v in enumerate(out) if i != 13] == [i * 2 for i in range(40) if i != 13]
    assert [13] in node.calls  # isolated down to the single bad item


async def test_a_transient_batch_failure_is_retried_whole() -> None:
    class Flaky(Doubles):
        def exec_batch(self, items):
            if not self.calls:
                self.calls.append(list(items))
                raise ConnectionError("blip")
            return super().exec_batch(items)

    node = Flaky(max_retries=2)
    shared: dict = {"n": 10}
    runner = fk.Runner()
    await runner.run_async(node, shared)
    assert shared["out"] == [i * 2 for i in range(10)]
    assert node.calls == [list(range(10)), list(range(10))]
    assert runner.last_run is not None and runner.last_run.nodes["Flaky"].retries == 1


async def test_max_concurrency_counts_batches_in_flight() -> None:
    in_flight = peak = 0
    both = asyncio.Event()

    class Slow(fk.AsyncParallelBatchNode):
        batch_size = 4
        batch_wait_ms = 1
        max_concurrency = 2

        async def prep_async(self, shared):
            return range(32)

        async def exec_batch_async(self, items):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            if in_flight == 2:
                both.set()
            await asyncio.wait_for(both.wait(), 5)
            in_flight -= 1
            return list(items)

    runner = fk.Runner()
    await runner.run_async(Slow(), {})
    assert peak == 2
    assert runner.last_run is not None and runner.last_run.nodes["Slow"].peak_in_flight == 2


class InWorkers(fk.BatchNode):
    executor = "process"
    batch_size = 8
    batch_wait_ms = 50

    def prep(self, shared):
        return list(range(16))

    def exec_batch(self, items):
        return [(i, os.getpid(), len(items)) for i in items]

    def post(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


def test_batches_run_on_worker_processes() -> None:
    shared: dict = {}
    fk.Runner().run(InWorkers(), shared)
    assert [i for i, _, _ in shared["out"]] == list(range(16))
    assert all(pid != os.getpid() for _, pid, _ in shared["out"])
    assert {size for _, _, size in shared["out"]} == {8}


async def test_exec_batch_must_return_one_result_per_item() -> None:
    class Short(Doubles):
        def exec_batch(self, items):
            return [0]

    with pytest.raises(BatchResultError, match="Short: exec_batch returned 1 results for 3 items"):
        await fk.Runner().run_async(Short(), {"n": 3})


class Sized(fk.Flow):
    def __init__(self, n: int, **options) -> None:
        super().__init__(**options)
        self.n = n

    def prep(self, shared):
        shared["n"] = self.n


async def test_a_node_reached_from_two_places_logs_each_item_under_its_own_path() -> None:
    node = Doubles()
    events: list[fk.events.Event] = []
    a = Sized(3, start=node, name="A")
    b = Sized(5, start=node, name="B")
    both = fk.Parallel(a, b, names=["A", "B"], into="by_branch")
    await fk.Runner(on_event=events.append).run_async(both, {})
    ends = [e.path for e in events if e.kind == "call_end" and e.node == "Doubles"]
    assert sorted(ends) == ["Parallel/A/Doubles"] * 3 + ["Parallel/B/Doubles"] * 5
    assert sorted(map(len, node.calls)) == [8]  # one batch held items from both places
