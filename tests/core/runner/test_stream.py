"""Results as they land: ``Runner.stream`` yields each item's result while the run goes on,
and a batch node's ``post_item`` hears each item as it finishes; ``post`` still gets the
whole batch in input order."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk


class Gated(fk.AsyncParallelBatchNode):
    """Item i finishes when the test opens gate i."""

    on_error = "collect"

    def __init__(self, gates: list[asyncio.Event], **options: Any) -> None:
        super().__init__(**options)
        self.gates = gates
        self.cancelled: list[int] = []

    async def prep_async(self, shared: dict[str, Any]) -> list[int]:
        return list(range(len(self.gates)))

    async def exec_async(self, item: int) -> int:
        try:
            await self.gates[item].wait()
        except asyncio.CancelledError:
            self.cancelled.append(item)
            raise
        if item == 1:
            raise ValueError("item one is bad")
        return item * 10

    async def post_async(self, shared: dict[str, Any], prep_res: Any, results: list[Any]) -> str:
        shared["post"] = results
        return "posted"


async def test_the_stream_yields_each_item_as_it_lands_while_the_run_goes_on() -> None:
    gates = [asyncio.Event() for _ in range(4)]
    shared: dict[str, Any] = {}
    stream = fk.Runner().stream(Gated(gates), shared)
    got: list[fk.ItemResult] = []
    gates[2].set()
    async for result in stream:
        got.append(result)
        assert stream.info.status == "running"  # the others are still in flight
        if len(got) < 4:
            gates[[2, 0, 3, 1][len(got)]].set()  # open the next gate only now
    assert [(r.index, r.value) for r in got[:3]] == [(2, 20), (0, 0), (3, 30)]
    assert (got[3].index, got[3].value, got[3].ok) == (1, None, False)
    assert got[3].error is not None and got[3].error.error_type == "ValueError"
    assert {(r.path, r.node) for r in got} == {("Gated", "Gated")}
    assert stream.result == "posted" and stream.info.status == "done"
    assert shared["post"][0] == 0 and shared["post"][2:] == [20, 30]  # input order


async def test_leaving_the_stream_early_cancels_the_run_cleanly() -> None:
    gates = [asyncio.Event() for _ in range(4)]
    node = Gated(gates)
    runner = fk.Runner()
    gates[0].set()
    async with runner.stream(node, {}) as stream:
        async for result in stream:
            assert result.index == 0
            break
    assert sorted(node.cancelled) == [1, 2, 3]  # awaited, not left running
    assert runner.last_run is not None and runner.last_run.status == "interrupted"
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()


async def test_a_run_that_fails_raises_after_the_items_that_landed() -> None:
    gates = [asyncio.Event() for _ in range(3)]
    for gate in gates:
        gate.set()
    got = []
    with pytest.raises(ValueError, match="item one is bad"):
        async for result in fk.Runner().stream(Gated(gates, on_error="raise"), {}):
            got.append(result.index)
    assert 1 not in got


class Lines(fk.AsyncParallelBatchNode):
    """Writes one line per item as it lands (post_item_async); post gets them all."""

    async def prep_async(self, shared: dict[str, Any]) -> list[float]:
        return [0.03, 0.0, 0.01]

    async def exec_async(self, delay: float) -> str:
        await asyncio.sleep(delay)
        return f"slept {delay}"

    async def post_item_async(self, shared: dict[str, Any], item: float, result: str) -> None:
        with open(shared["path"], "a") as out:
            out.write(result + "\n")
        shared.setdefault("landed", []).append(result)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, results: list[Any]) -> None:
        shared["lines_when_post_ran"] = Path(shared["path"]).read_text().splitlines()
        shared["results"] = results


def test_post_item_writes_each_result_as_it_lands_and_post_gets_the_batch(
    tmp_path: Path,
) -> None:
    shared: dict[str, Any] = {"path": tmp_path / "out.txt"}
    fk.Runner(report=tmp_path / "report").run(Lines(), shared)
    assert shared["landed"] == ["slept 0.0", "slept 0.01", "slept 0.03"]  # as they finished
    assert shared["lines_when_post_ran"] == shared["landed"]
    assert shared["results"] == ["slept 0.03", "slept 0.0", "slept 0.01"]  # input order
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    marks = sorted((m["at"], m["index"]) for m in report["marks"])
    assert [index for _, index in marks] == [1, 2, 0]
    assert all(0 <= at <= report["wall_time"] for at, _ in marks)


class SquareInWorkers(fk.BatchNode):
    def prep(self, shared: dict[str, Any]) -> list[int]:
        return list(range(6))

    def exec(self, item: int) -> tuple[int, int]:
        return item * item, os.getpid()

    def post_item(self, shared: dict[str, Any], item: int, result: tuple[int, int]) -> None:
        shared.setdefault("landed", {})[item] = (result[0], os.getpid())

    def post(self, shared: dict[str, Any], prep_res: Any, results: list[Any]) -> None:
        shared["post"] = [r[0] for r in results]


@pytest.mark.parametrize("executor", ["async", "thread", "process"])
def test_a_sync_post_item_runs_on_the_loop_for_every_executor(executor: str) -> None:
    shared: dict[str, Any] = {}
    fk.Runner(process_workers=2).run(SquareInWorkers(executor=executor), shared)
    assert shared["post"] == [0, 1, 4, 9, 16, 25]
    assert shared["landed"] == {i: (i * i, os.getpid()) for i in range(6)}


async def test_results_reused_from_the_store_land_too(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    gates = [asyncio.Event() for _ in range(3)]
    for gate in gates:
        gate.set()
    await fk.Runner(store=store, run_id="r").run_async(Gated(gates), {})
    node = Gated(gates)
    got = [r async for r in fk.Runner(store=store, resume="r", skip_failed=True).stream(node, {})]
    assert sorted((r.index, r.ok) for r in got) == [(0, True), (1, False), (2, True)]
