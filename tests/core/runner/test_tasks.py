"""Background work (memory sampler, micro-batches and their timers, checkpoint flushes) has
one owner, the run's task group: nothing of a run is left on the loop once it returns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import flowkit as fk


class Slow(fk.BatchNode):
    batch_size = 4
    batch_wait_ms = 10_000  # a timer still pending when the run fails

    def prep(self, shared):
        return list(range(6))

    async def exec_batch_async(self, items):
        if len(items) < 4:
            raise AssertionError("the last, partial batch never runs")
        await asyncio.sleep(0)
        return items


class Boom(fk.AsyncNode):
    async def exec_async(self, prep_res):
        await asyncio.sleep(0.05)
        raise RuntimeError("boom")


async def test_a_finished_run_leaves_no_task_or_timer_behind(tmp_path: Path) -> None:
    runner = fk.Runner(store=tmp_path / "runs.db", max_rss_mb=10_000)
    flow = fk.AsyncFlow(start=fk.Parallel(Slow(), Boom()))
    with pytest.raises(RuntimeError, match="boom"):
        await runner.run_async(flow, {})
    assert asyncio.all_tasks() == {asyncio.current_task()}
    loop = asyncio.get_running_loop()
    pending = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    assert pending == []


async def test_a_run_refused_before_it_starts_leaves_nothing_running() -> None:
    with pytest.raises(fk.errors.ConfigError, match="unknown node"):
        await fk.Runner(max_rss_mb=10_000, limits={"Nope": 2}).run_async(Boom(), {})
    assert asyncio.all_tasks() == {asyncio.current_task()}
