"""The fake-parallelism detector: loud for code that blocks the event loop, silent otherwise."""

from __future__ import annotations

import asyncio
import itertools
import time
import warnings
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.detector import BlockDetector
from flowkit.errors import FlowkitWarning
from flowkit.events import Event


class Sleepy(fk.AsyncParallelBatchNode):
    """Calls a blocking sleep inside async def: looks parallel, runs one item at a time."""

    max_concurrency = 4

    async def prep_async(self, shared):
        return range(2)

    async def exec_async(self, item):
        time.sleep(0.3)
        return item


class Polite(fk.AsyncParallelBatchNode):
    max_concurrency = 4

    async def prep_async(self, shared):
        return range(4)

    async def exec_async(self, item):
        await asyncio.sleep(0.3)
        return item


class Spin(fk.AsyncNode):
    async def exec_async(self, _):
        deadline = time.perf_counter() + 0.3
        while time.perf_counter() < deadline:
            pass


class SyncSleeper(fk.Node):
    def exec(self, _):
        time.sleep(0.3)


def flow_of(*nodes: fk.BaseNode) -> fk.AsyncFlow:
    first = nodes[0]
    for a, b in itertools.pairwise(nodes):
        a >> b
    return fk.AsyncFlow(start=first, name="pipeline")


async def run_recording(flow: fk.BaseNode, **options: object) -> list[Event]:
    events: list[Event] = []
    runner = fk.Runner(on_event=events.append, progress=False, **options)  # type: ignore[arg-type]
    await runner.run_async(flow, {})
    return [e for e in events if e.kind == "loop_blocked"]


async def test_a_blocking_sleep_in_async_exec_warns_once_naming_the_node() -> None:
    with pytest.warns(FlowkitWarning) as caught:
        blocked = await run_recording(flow_of(Sleepy()))
    [warning] = [w for w in caught if issubclass(w.category, FlowkitWarning)]
    message = str(warning.message)
    assert "Sleepy.exec_async blocked the event loop" in message
    assert 'executor="thread"' in message and 'executor="process"' in message
    assert Path(warning.filename).name == Path(__file__).name  # points at the blocking line
    assert {(e.node, e.path, e.hook) for e in blocked} == {
        ("Sleepy", "pipeline/Sleepy", "exec_async")
    }
    assert sum(e.seconds for e in blocked) >= 0.3


async def test_awaiting_work_stays_silent(recwarn: pytest.WarningsRecorder) -> None:
    blocked = await run_recording(flow_of(Polite()))
    assert blocked == []
    assert not [w for w in recwarn if issubclass(w.category, FlowkitWarning)]


async def test_a_cpu_loop_inside_async_def_is_caught() -> None:
    with pytest.warns(FlowkitWarning, match=r"Spin\.exec_async"):
        await run_recording(flow_of(Spin(), Polite()))


async def test_a_sync_node_running_inline_in_an_async_flow_is_caught() -> None:
    with pytest.warns(FlowkitWarning, match=r"SyncSleeper\.exec blocked"):
        blocked = await run_recording(flow_of(Polite(), SyncSleeper()))
    assert [e.node for e in blocked] == ["SyncSleeper"]


async def test_many_quick_calls_that_never_await_are_not_one_block(
    recwarn: pytest.WarningsRecorder,
) -> None:
    class Busy(fk.AsyncParallelBatchNode):
        max_concurrency = 50

        async def prep_async(self, shared):
            return range(200)

        async def exec_async(self, item):
            deadline = time.perf_counter() + 0.002
            while time.perf_counter() < deadline:
                pass

    assert await run_recording(flow_of(Busy())) == []
    assert not [w for w in recwarn if issubclass(w.category, FlowkitWarning)]


async def test_blocks_shorter_than_the_threshold_pass(recwarn: pytest.WarningsRecorder) -> None:
    assert await run_recording(flow_of(Sleepy()), detect_blocking=2.0) == []
    assert await run_recording(flow_of(Sleepy()), detect_blocking=None) == []
    assert not [w for w in recwarn if issubclass(w.category, FlowkitWarning)]


async def test_the_report_flags_the_blocked_node(tmp_path: Path) -> None:
    from flowkit.report import load_report

    with pytest.warns(FlowkitWarning):
        await fk.Runner(report=tmp_path, progress=False).run_async(flow_of(Sleepy()), {})
    [sleepy] = load_report(tmp_path).nodes
    assert sleepy.loop_blocked >= 0.3
    assert any("blocked the event loop" in f for f in sleepy.findings)
    assert any("of a limit of 4: the event loop was blocked" in f for f in sleepy.findings)


def test_no_watchdog_where_blocking_cannot_matter() -> None:
    class Cpu(fk.BatchNode):
        executor = "process"

        def exec(self, item):
            return item

    sync_only = fk.Flow(start=SyncSleeper())
    assert BlockDetector.for_run(sync_only, 0.1, start_method=None, emit=None) is None
    with_processes = flow_of(Polite(), Cpu())
    assert BlockDetector.for_run(with_processes, 0.1, start_method=None, emit=None) is None
    assert BlockDetector.for_run(with_processes, 0.1, start_method="spawn", emit=None)


async def test_silent_where_everything_runs_one_at_a_time(
    recwarn: pytest.WarningsRecorder,
) -> None:
    one_by_one = fk.AsyncFlow(start=Sleepy(max_concurrency=1))
    assert await run_recording(one_by_one) == []
    overridden = fk.AsyncFlow(start=Sleepy())
    assert await run_recording(overridden, limits={"Sleepy": 1}) == []
    assert not [w for w in recwarn if issubclass(w.category, FlowkitWarning)]
    with pytest.warns(FlowkitWarning, match=r"Sleepy\.exec_async"):
        assert await run_recording(fk.AsyncFlow(start=Sleepy(max_concurrency=2)))


def test_a_bad_threshold_is_refused() -> None:
    with pytest.raises(fk.FlowkitError, match="detect_blocking"):
        fk.Runner(detect_blocking=-1)


async def test_the_watchdog_thread_ends_with_the_run() -> None:
    import threading

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FlowkitWarning)
        await run_recording(flow_of(Sleepy()))
    assert not [t for t in threading.enumerate() if t.name == "flowkit-detector"]
