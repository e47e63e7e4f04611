"""Task parallelism: different branches at once, joined without races on shared."""

from __future__ import annotations

import asyncio

import pytest

import flowkit as fk
from flowkit.errors import FlowStructureError, GraphError


class Rendezvous:
    """Each branch waits here until ``n`` branches are inside at once (or times out)."""

    def __init__(self, n: int) -> None:
        self.n, self.inside, self.peak = n, 0, 0
        self.full = asyncio.Event()

    async def meet(self) -> None:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        if self.inside >= self.n:
            self.full.set()
        await asyncio.wait_for(self.full.wait(), 5)
        self.inside -= 1


def scenario(name: str, point: Rendezvous) -> fk.AsyncNode:
    class Scenario(fk.AsyncNode):
        async def prep_async(self, shared):
            return shared["question"]

        async def exec_async(self, question):
            await point.meet()
            return f"{name}:{question}"

        async def post_async(self, shared, prep_res, exec_res):
            shared["answer"] = exec_res

    return Scenario(name=name)


async def test_branches_run_at_once_and_each_gets_its_own_slot() -> None:
    point = Rendezvous(3)
    par = fk.Parallel(
        scenario("local", point), scenario("cot", point), scenario("remote", point), into="by"
    )
    shared: dict = {"question": "q1"}
    await fk.Runner().run_async(fk.AsyncFlow(start=par), shared)
    assert point.peak == 3
    assert shared["by"] == {
        "local": {"answer": "local:q1"},
        "cot": {"answer": "cot:q1"},
        "remote": {"answer": "remote:q1"},
    }
    assert "answer" not in shared


async def test_reducer_receives_every_branch_update() -> None:
    point = Rendezvous(2)

    def reduce(shared, updates):
        shared["answers"] = sorted(u["answer"] for u in updates.values())

    par = fk.Parallel(scenario("a", point), scenario("b", point), reducer=reduce)
    shared: dict = {"question": "q"}
    await fk.Runner().run_async(par, shared)
    assert shared["answers"] == ["a:q", "b:q"]


async def test_disjoint_updates_merge_and_conflicts_are_refused() -> None:
    class Put(fk.Node):
        def __init__(self, key: str, value: int) -> None:
            super().__init__(name=f"put_{key}_{value}")
            self.key, self.value = key, value

        def post(self, shared, prep_res, exec_res):
            shared[self.key] = self.value

    shared: dict = {}
    await fk.Runner().run_async(fk.Parallel(Put("x", 1), Put("y", 2)), shared)
    assert shared == {"x": 1, "y": 2}
    with pytest.raises(FlowStructureError, match="both set shared\\['x'\\]"):
        await fk.Runner().run_async(fk.Parallel(Put("x", 1), Put("x", 2)), {})


async def test_branch_limit_bounds_branches_in_flight() -> None:
    in_flight = peak = 0

    class Slow(fk.AsyncNode):
        async def exec_async(self, prep_res):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            for _ in range(5):
                await asyncio.sleep(0)
            in_flight -= 1

    par = fk.Parallel(*(Slow() for _ in range(6)), max_concurrency=2)
    await fk.Runner().run_async(par, {})
    assert peak == 2


async def test_parallel_wires_like_any_node_and_branches_can_be_flows() -> None:
    point = Rendezvous(2)

    class Done(fk.Node):
        def post(self, shared, prep_res, exec_res):
            shared["done"] = sorted(shared["by"])

    branch_flow = fk.AsyncFlow(start=scenario("flow_branch", point), name="as_flow")
    par = fk.Parallel(branch_flow, scenario("node_branch", point), into="by")
    par >> Done()
    shared: dict = {"question": "q"}
    await fk.Runner().run_async(fk.AsyncFlow(start=par), shared)
    assert shared["done"] == ["as_flow", "node_branch"]


def test_parallel_refuses_bad_branches() -> None:
    with pytest.raises(GraphError, match="at least one branch"):
        fk.Parallel()
    with pytest.raises(GraphError, match="branch 1 must be a node"):
        fk.Parallel(fk.Node(), "not a node")  # type: ignore[arg-type]
