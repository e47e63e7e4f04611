"""Executors: exec really runs in threads, other processes and on Ray; pools are cleaned up."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.errors import NotImplementedExecError, PicklingError, WorkerCrashedError


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class CpuWork(fk.BatchNode):
    executor = "process"

    def prep(self, shared):
        return list(range(shared["n"]))

    def exec(self, item):
        t0 = time.time()
        spin(0.03)
        return {"item": item, "pid": os.getpid(), "start": t0, "end": time.time()}

    def post(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


class CountsUnpickling(CpuWork):
    def __init__(self, log: str) -> None:
        super().__init__()
        self.log = log

    def __setstate__(self, state):
        self.__dict__.update(state)
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")


class Both(fk.AsyncParallelBatchNode):
    executor = "process"

    async def prep_async(self, shared):
        return [1, 2, 3]

    def exec(self, item):
        return (item, os.getpid())

    async def post_async(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


class Fails(fk.BatchNode):
    executor = "process"

    def prep(self, shared):
        return [0, 1, 2]

    def exec(self, item):
        if item == 2:
            raise ValueError("bad item")
        return item


class Dies(fk.Node):
    executor = "process"

    def exec(self, prep_res):
        os._exit(3)


class BadItem(fk.BatchNode):
    executor = "process"

    def prep(self, shared):
        return [threading.Lock()]

    def exec(self, item):
        return 1


class BadResult(fk.BatchNode):
    executor = "process"
    on_error = "collect"

    def prep(self, shared):
        return [1]

    def exec(self, item):
        return threading.Lock()

    def post(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


def overlapping(rows: list[dict]) -> bool:
    return any(
        a["pid"] != b["pid"] and a["start"] < b["end"] and b["start"] < a["end"]
        for a in rows
        for b in rows
    )


def test_cpu_bound_exec_runs_in_other_processes_at_once(alive: Callable[[int], bool]) -> None:
    shared: dict = {"n": 16}
    runner = fk.Runner(process_workers=2)
    runner.run(CpuWork(), shared)
    rows = shared["out"]
    assert [r["item"] for r in rows] == list(range(16))
    pids = {r["pid"] for r in rows}
    assert os.getpid() not in pids
    assert len(pids) == 2
    assert overlapping(rows)
    assert not any(alive(pid) for pid in pids)  # the pool is gone once the run returns


def test_node_travels_once_per_worker_not_per_item(tmp_path: Path) -> None:
    log = tmp_path / "unpickled.txt"
    shared: dict = {"n": 40}
    fk.Runner(process_workers=2).run(CountsUnpickling(str(log)), shared)
    unpickled_in = log.read_text().split()
    assert len(unpickled_in) == len(set(unpickled_in)) == 2
    assert {str(r["pid"]) for r in shared["out"]} == set(unpickled_in)


class Times(fk.Node):
    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def exec(self, item):
        return item * self.factor


async def test_a_node_the_worker_evicted_is_sent_again() -> None:
    from flowkit.executors import ProcessExecutor
    from flowkit.executors.workers import WORKER_CACHE

    pool = ProcessExecutor(1)
    bound = [pool.bind(Times(k)) for k in range(WORKER_CACHE + 2)]
    try:
        for round_ in range(2):  # the second round needs the nodes the first one pushed out
            for k, binding in enumerate(bound):
                [(ok, value, _, _)] = await binding.run([round_ + 1], [0])
                assert ok and value == (round_ + 1) * k
    finally:
        pool.close()


def test_async_parallel_batch_node_runs_its_sync_exec_in_processes() -> None:
    shared: dict = {}
    fk.Runner().run(Both(), shared)
    assert [x for x, _ in shared["out"]] == [1, 2, 3]
    assert all(pid != os.getpid() for _, pid in shared["out"])


def test_worker_exceptions_keep_their_type_and_name_the_item() -> None:
    with pytest.raises(ValueError, match="bad item") as info:
        fk.Runner().run(Fails(), {})
    assert "Fails failed on item 2" in "\n".join(info.value.__notes__)


def test_a_dead_worker_is_reported_not_hung() -> None:
    with pytest.raises(WorkerCrashedError, match="exit code 3"):
        fk.Runner().run(Dies(), {})


def test_unpicklable_node_is_refused_before_any_work(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class HoldsLock(fk.BatchNode):
        executor = "process"

        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()

        def prep(self, shared):
            marker.write_text("prep ran")
            return [1]

        def exec(self, item):
            return item

    flow = fk.Flow(start=HoldsLock())
    with pytest.raises(PicklingError, match="HoldsLock: the node cannot be pickled"):
        fk.Runner().run(flow, {})
    assert not marker.exists()


def test_unpicklable_item_and_result_are_named() -> None:
    with pytest.raises(PicklingError, match="BadItem: item <unlocked _thread.lock"):
        fk.Runner().run(BadItem(), {})

    shared: dict = {}
    fk.Runner().run(BadResult(), shared)
    [record] = shared["out"]
    assert isinstance(record, fk.ErrorRecord)
    assert record.error_type == "PicklingError"
    assert "exec returned lock" in record.message


def test_thread_executor_overlaps_blocking_calls_up_to_the_limit() -> None:
    barrier = threading.Barrier(4, timeout=5)
    seen: set[int] = set()

    class Blocking(fk.BatchNode):
        executor = "thread"
        max_concurrency = 4

        def prep(self, shared):
            return range(8)

        def exec(self, item):
            seen.add(threading.get_ident())
            barrier.wait()  # breaks (and fails the test) unless 4 calls overlap
            return item

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared: dict = {}
    runner = fk.Runner()
    runner.run(Blocking(), shared)
    assert shared["out"] == list(range(8))
    assert threading.get_ident() not in seen
    assert runner.last_run is not None
    assert runner.last_run.nodes["Blocking"].peak_in_flight == 4


def test_executor_needs_a_sync_exec() -> None:
    class OnlyAsync(fk.AsyncParallelBatchNode):
        executor = "thread"

        async def exec_async(self, item):
            return item

    with pytest.raises(NotImplementedExecError, match="implement exec"):
        fk.Runner().run(OnlyAsync(), {})


def test_ray_executor_runs_on_a_local_cluster() -> None:
    pytest.importorskip("ray")
    shared: dict = {"n": 6}
    node = CpuWork(executor="ray")
    fk.Runner().run(node, shared)
    rows = shared["out"]
    assert [r["item"] for r in rows] == list(range(6))
    assert os.getpid() not in {r["pid"] for r in rows}


class Recording:
    """A user's executor: runs sync exec inline on the loop, at most ``size`` at once, and
    records what it ran."""

    size = 3

    def __init__(self) -> None:
        self.ran: list[object] = []
        self.closed = False

    def bind(self, node):
        executor = self

        class Bound:
            chunked = False
            awaits = True

            async def call(self, item):
                executor.ran.append(item)
                await asyncio.sleep(0.01)
                return node.exec(item)

            async def retry(self, item, attempt):
                return await self.call(item)

            async def run(self, items, attempts):
                raise NotImplementedError

        return Bound()

    def close(self, ok: bool = True) -> None:
        self.closed = True


class OnMine(fk.BatchNode):
    executor = "mine"

    def prep(self, shared):
        return list(range(12))

    def exec(self, item):
        return item * 3

    def post(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


def test_a_users_executor_given_by_name_runs_the_nodes_that_name_it() -> None:
    mine = Recording()
    runner = fk.Runner(executors={"mine": mine})
    shared: dict = {}
    runner.run(OnMine(), shared)
    assert shared["out"] == [i * 3 for i in range(12)]
    assert sorted(mine.ran) == list(range(12))
    info = runner.last_run
    assert info is not None
    stats = info.nodes["OnMine"]
    assert (stats.executor, stats.peak_in_flight) == ("mine", 3)  # its size bounds the node
    assert not mine.closed  # a user's executor outlives the run


def test_a_users_executor_may_not_take_a_built_in_name() -> None:
    with pytest.raises(fk.ConfigError, match="'thread' is a built-in executor"):
        fk.Runner(executors={"thread": Recording()})
