"""Events: what subscribers hear about a run."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

import flowkit as fk
from flowkit.errors import FlowkitWarning
from flowkit.events import CallEnded, CallStarted, Event, ItemFailed, Observer
from flowkit.results import RunInfo


class Recorder(Observer):
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.started: str | None = None
        self.closed = False

    def start(self, info: RunInfo) -> None:
        self.started = info.run_id

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True

    def kinds(self) -> Counter[str]:
        return Counter(e.kind for e in self.events)


def peak_from(events: list[Event], node: str) -> int:
    level = peak = 0
    for e in sorted(
        (e for e in events if isinstance(e, CallStarted | CallEnded) and e.node == node),
        key=lambda e: (e.time, isinstance(e, CallStarted)),
    ):
        level += 1 if isinstance(e, CallStarted) else -1
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
    assert kinds["call_start"] == kinds["call_end"] == 11  # ten items and one retry
    assert kinds["call_retry"] == 1
    assert kinds["wait"] >= 1
    node_paths = {e.path for e in rec.events if isinstance(e, fk.events.NodeStarted)}
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
    [error] = [e for e in rec.events if isinstance(e, ItemFailed)]
    assert (error.index, error.error_type, error.message) == (
        1,
        "ValueError",
        "no twos",
    )


def test_process_items_carry_their_worker_side_times() -> None:
    rec = Recorder()
    fk.Runner(on_event=rec).run(Doubler(), {})
    spans = [e for e in rec.events if isinstance(e, CallStarted | CallEnded)]
    assert len(spans) == 6
    starts = {e.index: e.time for e in spans if isinstance(e, CallStarted)}
    ends = {e.index: e.time for e in spans if isinstance(e, CallEnded)}
    assert all(ends[i] >= starts[i] for i in range(3))


class Raises(Observer):
    """An observer that raises on one kind of event (or on start/close)."""

    def __init__(self, on: str) -> None:
        self.on, self.seen = on, 0

    def start(self, info: RunInfo) -> None:
        if self.on == "start":
            raise RuntimeError("observer broke on start")

    def __call__(self, event: Event) -> None:
        self.seen += 1
        if event.kind == self.on:
            raise RuntimeError(f"observer broke on {event.kind}")

    def close(self) -> None:
        if self.on == "close":
            raise RuntimeError("observer broke on close")


class Counted(fk.AsyncParallelBatchNode):
    on_error = "collect"

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.ran: list[int] = []

    async def prep_async(self, shared):
        return range(5)

    async def exec_async(self, item):
        self.ran.append(item)
        return item * 10

    async def post_async(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


@pytest.mark.parametrize("on", ["start", "call_start", "call_end", "node_end", "close"])
async def test_an_observer_that_raises_is_dropped_with_a_warning_and_the_run_goes_on(
    on: str,
) -> None:
    broken, rec = Raises(on), Recorder()
    node, shared = Counted(), {}
    runner = fk.Runner(on_event=[broken, rec])
    with pytest.warns(FlowkitWarning, match=f"observer Raises raised RuntimeError.*{on}"):
        await runner.run_async(node, shared)
    assert sorted(node.ran) == [0, 1, 2, 3, 4]  # every exec ran
    assert shared["out"] == [0, 10, 20, 30, 40]
    info = runner.last_run
    assert info is not None and info.status == "done" and info.errors == []
    assert rec.kinds()["call_end"] == 5 and rec.closed  # the others still heard everything


async def test_two_runs_on_one_runner_each_own_their_results() -> None:
    runner = fk.Runner()
    first, second = Counted(name="First"), Counted(name="Second")
    a, b = runner.start(first, {}), runner.start(second, {})
    await asyncio.gather(a, b)
    assert set(a.info.nodes) == {"First"} and set(b.info.nodes) == {"Second"}
    assert a.info.nodes["First"].items == b.info.nodes["Second"].items == 5
    assert a.info.run_id != b.info.run_id
    assert runner.last_run in (a.info, b.info)
