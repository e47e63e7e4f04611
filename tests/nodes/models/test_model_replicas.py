"""ReplicaPool: one worker process per replica, fed whole batches, closed without orphans.

The replicas here run a plain function that reports the process and device it ran on, so
these tests need no model and no torch.
"""

from __future__ import annotations

import asyncio
import functools
import os
import pickle
import time
from collections.abc import Callable
from typing import Any

import pytest

import flowkit as fk
from flowkit.errors import BatchResultError, ConfigError, PicklingError, WorkerCrashedError
from nodes.models import ModelNode, PoolClosedError, ReplicaPool


def _tag(device: str, items: list[Any]) -> list[Any]:
    if "boom" in items:
        raise ValueError(f"cannot handle {items}")
    if "die" in items:
        os._exit(3)
    if "hang" in items:
        time.sleep(60)
    if "short" in items:
        return []
    env = (os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("OMP_NUM_THREADS"))
    return [(os.getpid(), device, env, len(items), item) for item in items]


def tagger(device: str) -> Any:
    """A replica factory: the batch function reports where each item ran."""
    return functools.partial(_tag, device)


async def test_workers_start_only_when_batches_need_them() -> None:
    async with ReplicaPool(tagger, replicas=3) as pool:
        assert pool.pids == []
        [(pid, *_)] = await pool.run(["a"])
        assert pool.pids == [pid]  # one batch at a time needs one replica
        await pool.run(["b"])
        assert pool.pids == [pid]


async def test_n_replicas_are_n_worker_processes_and_batches_spread_across_them() -> None:
    async with ReplicaPool(tagger, replicas=3) as pool:
        results = await asyncio.gather(*(pool.run([i, i + 100]) for i in range(9)))
        pids = pool.pids
    assert len(set(pids)) == 3 and os.getpid() not in pids
    assert {row[0] for batch in results for row in batch} == set(pids)
    assert [[row[4] for row in batch] for batch in results] == [[i, i + 100] for i in range(9)]
    assert all(row[1] == "cpu" for batch in results for row in batch)


async def test_a_failing_batch_raises_in_its_caller_and_the_replica_keeps_serving() -> None:
    async with ReplicaPool(tagger, replicas=2) as pool:
        good, bad = await asyncio.gather(
            pool.run(["fine"]), pool.run(["boom"]), return_exceptions=True
        )
        assert isinstance(good, list) and good[0][4] == "fine"
        assert isinstance(bad, ValueError) and "cannot handle ['boom']" in str(bad)
        assert "flowkit: raised by the replica on cpu" in bad.__notes__
        before = pool.pids
        await asyncio.gather(pool.run(["x"]), pool.run(["y"]))
        assert pool.pids == before


async def test_a_replica_that_dies_fails_its_batch_and_is_replaced(
    alive: Callable[[int], bool],
) -> None:
    async with ReplicaPool(tagger, replicas=1) as pool:
        await pool.run(["first"])
        [dead] = pool.pids
        with pytest.raises(WorkerCrashedError, match="exit code 3"):
            await pool.run(["die"])
        assert not alive(dead)
        [(pid, *_)] = await pool.run(["again"])
        assert pid != dead and pool.pids == [pid]


async def test_a_cancelled_batch_kills_its_replica(alive: Callable[[int], bool]) -> None:
    async with ReplicaPool(tagger, replicas=1) as pool:
        task = asyncio.create_task(pool.run(["hang"]))
        await asyncio.sleep(0)  # the task starts the replica, sends the batch, waits
        [pid] = pool.pids
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not alive(pid) and pool.pids == []
        assert (await pool.run(["next"]))[0][4] == "next"


async def test_closing_stops_every_replica_and_fails_batches_in_flight(
    alive: Callable[[int], bool],
) -> None:
    pool = ReplicaPool(tagger, replicas=2)
    await asyncio.gather(pool.run(["warm"]), pool.run(["up"]))
    busy = asyncio.create_task(pool.run(["hang"]))  # one replica busy, one idle
    await asyncio.sleep(0)
    pids = pool.pids
    assert len(pids) == 2
    pool.close()
    with pytest.raises(PoolClosedError):
        await busy
    assert not any(alive(pid) for pid in pids)
    assert pool.pids == []
    with pytest.raises(PoolClosedError):
        await pool.run(["late"])


async def test_a_wrong_number_of_results_is_an_error() -> None:
    async with ReplicaPool(tagger) as pool:
        with pytest.raises(BatchResultError, match="returned 0 results for 2 items"):
            await pool.run(["short", "x"])


async def test_cpu_replicas_split_the_cores_and_gpu_replicas_see_one_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with ReplicaPool(tagger, replicas=2, threads_per_replica=1) as pool:
        [row] = await pool.run(["x"])
        assert row[1:3] == ("cpu", (None, "1"))
    # the factory never touches CUDA, so this runs without a GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    async with ReplicaPool(tagger, devices=["cuda:0", "cuda:1"]) as pool:
        rows = await asyncio.gather(pool.run(["a"]), pool.run(["b"]))
    seen = sorted((device, env[0]) for [(_, device, env, _, _)] in rows)
    assert seen == [("cuda:0", "4"), ("cuda:0", "6")]


def test_devices_are_checked_when_the_pool_is_built() -> None:
    with pytest.raises(ConfigError, match="cuda:0 is listed 2 times"):
        ReplicaPool(tagger, devices=["cuda:0", "cuda:0"])
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        ReplicaPool(tagger, devices=["tpu"])
    with pytest.raises(ConfigError, match="2 devices and replicas=3"):
        ReplicaPool(tagger, devices=["cpu", "cpu"], replicas=3)
    with pytest.raises(PicklingError, match="cannot be pickled"):
        ReplicaPool(lambda device: len)
    assert ReplicaPool(tagger, devices=["cpu"] * 3).size == 3


class Tag(ModelNode):
    batch_size = 10
    batch_wait_ms = 2000  # only full batches go early: the counts below are exact

    def prep(self, shared: Any) -> Any:
        return [self.params["i"]]

    def post(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        shared[self.params["i"]] = exec_res[0]


class PerItem(fk.AsyncParallelBatchFlow):
    async def prep_async(self, shared: Any) -> Any:
        return [{"i": i} for i in range(100)]


async def test_a_node_feeds_batches_from_100_parallel_sub_flows_to_two_replicas() -> None:
    async with ReplicaPool(tagger, replicas=2) as pool:
        runner = fk.Runner()
        shared: dict[int, Any] = {}
        await runner.run_async(PerItem(start=Tag(pool=pool)), shared)
        pids = set(pool.pids)
    assert sorted(shared) == list(range(100))
    assert all(row[4] == i for i, row in shared.items())
    assert {row[3] for row in shared.values()} == {10}  # ten batches of ten
    assert {row[0] for row in shared.values()} == pids and len(pids) == 2
    assert runner.last_run is not None
    stats = runner.last_run.nodes["Tag"]
    assert stats.items == 100 and stats.peak_in_flight == 2


def test_a_node_with_a_pool_runs_on_the_loop_and_is_refused_elsewhere() -> None:
    pool = ReplicaPool(tagger, replicas=2)
    node = ModelNode(pool=pool)
    assert (node.executor, node.max_concurrency) == ("async", 2)
    with pytest.raises(ConfigError, match="drop executor='thread'"):
        ModelNode(pool=pool, executor="thread")
    with pytest.raises(ConfigError, match="give a backend or a pool"):
        ModelNode()
    with pytest.raises(TypeError, match="stays in the process that created it"):
        pickle.dumps(node)
    pool.close()


async def test_a_pool_given_to_the_runner_as_an_executor_runs_the_batches_of_nodes_naming_it(
    alive: Callable[[int], bool],
) -> None:
    pool = ReplicaPool(tagger, replicas=2)
    runner = fk.Runner(executors={"replicas": pool})
    shared: dict[int, Any] = {}
    await runner.run_async(PerItem(start=Tag(executor="replicas")), shared)
    pids = set(pool.pids)
    assert sorted(shared) == list(range(100))
    assert {row[0] for row in shared.values()} == pids and len(pids) == 2
    assert {row[3] for row in shared.values()} == {10}
    assert runner.last_run is not None and runner.last_run.nodes["Tag"].peak_in_flight == 2
    assert all(alive(pid) for pid in pids)  # the runner leaves a user's executor running
    pool.close()
    assert not any(alive(pid) for pid in pids)
