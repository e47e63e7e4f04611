"""Events: what subscribers hear about a run."""

from __future__ import annotations

import asyncio
from collections import Counter

import flowkit as fk
from flowkit.events import Event, Observer


class Recorder(Observer):
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.started: str | None = None
        self.closed = False

    def start(self, run_id: str) -> None:
        self.started = run_id

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True

    def kinds(self) -> Counter[str]:
        return Counter(e.kind for e in self.events)


def peak_from(events: list[Event], node: str) -> int:
    level = peak = 0
    for e in sorted(
        (e for e in events if e.node == node and e.kind in ("item_start", "item_end")),
        key=lambda e: (e.time, e.kind == "item_start"),
    ):
        level += 1 if e.kind == "item_start" else -1
        peak = max(peak, level)
    return peak


class Fetch(fk.AsyncParallelBatchNode):
    max_concurrency = 3
    uses = ("api",)

    async def prep_async(self, shared):
        return range(10)

    async def exec_async(self, item):
        await asyncio.sleep(0.01)
        if item == 4 and self.cur_retry == 0:
            raise ConnectionError("flaky")
        return item


class Doubler(fk.BatchNode):
    executor = "process"

    def prep(self, shared):
        return [1, 2, 3]

    def exec(self, item):
        return item * 2


async def test_events_trace_nodes_items_retries_and_limiter_waits() -> None:
    rec = Recorder()
    runner = fk.Runner(limits={"api": fk.Limit(rpm=6000)}, on_event=rec)
    flow = fk.AsyncFlow(start=Fetch(max_retries=2), name="pipeline")
    await runner.run_async(flow, {})
    kinds = rec.kinds()
    assert rec.started == runner.last_run.run_id  # type: ignore[union-attr]
    assert rec.closed
    assert kinds["run_start"] == kinds["run_end"] == 1
    assert kinds["item_start"] == kinds["item_end"] == 11  # ten items and one retry
    assert kinds["item_retry"] == 1
    assert kinds["limiter_wait"] >= 1
    node_paths = {e.path for e in rec.events if e.kind == "node_start"}
    assert node_paths == {"pipeline", "pipeline/Fetch"}
    stats = runner.last_run.nodes["Fetch"]  # type: ignore[union-attr]
    assert peak_from(rec.events, "Fetch") == stats.peak_in_flight
    assert stats.limiter_wait["api"] > 0


async def test_peak_in_flight_from_events_matches_a_counted_peak() -> None:
    gate = asyncio.Event()
    in_flight = peak = 0

    class Gated(fk.AsyncParallelBatchNode):
        max_concurrency = 4

        async def prep_async(self, shared):
            return range(12)

        async def exec_async(self, item):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            if in_flight == 4:
                gate.set()
            await asyncio.wait_for(gate.wait(), 5)
            in_flight -= 1

    rec = Recorder()
    runner = fk.Runner(on_event=rec)
    await runner.run_async(Gated(), {})
    assert peak == 4
    assert peak_from(rec.events, "Gated") == 4
    assert runner.last_run.nodes["Gated"].peak_in_flight == 4  # type: ignore[union-attr]


async def test_failed_items_are_reported_once_with_their_error() -> None:
    class Bad(fk.AsyncParallelBatchNode):
        on_error = "collect"

        async def prep_async(self, shared):
            return [1, 2]

        async def exec_async(self, item):
            if item == 2:
                raise ValueError("no twos")
            return item

    rec = Recorder()
    await fk.Runner(on_event=rec).run_async(Bad(), {})
    [error] = [e for e in rec.events if e.kind == "item_error"]
    assert (error.index, error.data["error_type"], error.data["message"]) == (
        1,
        "ValueError",
        "no twos",
    )


def test_process_items_carry_their_worker_side_times() -> None:
    rec = Recorder()
    fk.Runner(on_event=rec).run(Doubler(), {})
    spans = [e for e in rec.events if e.kind in ("item_start", "item_end")]
    assert len(spans) == 6
    starts = {e.index: e.time for e in spans if e.kind == "item_start"}
    ends = {e.index: e.time for e in spans if e.kind == "item_end"}
    assert all(ends[i] >= starts[i] for i in range(3))
