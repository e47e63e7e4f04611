"""Named limiters in the report: waiting is not running, wherever the limiter is taken."""

from __future__ import annotations

import asyncio
import gc
import re
import time
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.cli import main
from flowkit.commands import FlowCommand
from flowkit.report import load_report
from flowkit.report.tables import summary_table


class Counted:
    """Counts exec bodies running at once (after the limiter is taken)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def work(self, seconds: float) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.now -= 1


def inside_limiter(counter: Counted, items: int = 24) -> fk.AsyncParallelBatchNode:
    class AskInside(fk.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return range(items)

        async def exec_async(self, item):
            limiter = fk.current_limiter("llm")
            assert limiter is not None
            await limiter.acquire()
            try:
                await counter.work(0.02)
            finally:
                limiter.release()
            return item

    return AskInside()


def node_report(report: fk.RunInfo | object, name: str):
    return next(n for n in report.nodes if n.name == name)  # type: ignore[attr-defined]


async def test_a_limiter_taken_inside_exec_bounds_running_calls_in_the_report(
    tmp_path: Path,
) -> None:
    counter = Counted()
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=3)}, report=tmp_path, progress=False)
    await runner.run_async(fk.AsyncFlow(start=inside_limiter(counter)), {})
    assert counter.peak == 3
    report = load_report(tmp_path)
    node = node_report(report, "AskInside")
    assert node.items == 24
    assert node.peak_in_flight == 3  # not 24: calls waiting for the limiter are not running
    assert node.mean_in_flight <= 3.0 + 1e-9
    assert node.speedup <= 3.0 + 1e-9
    assert node.wait_time > 0 and node.limiter_wait["llm"] > 0
    assert node.limiters == ["llm"]
    assert any("bounded by limiter 'llm': 3 of 3 busy" in f for f in node.findings)
    assert report.lanes == 3
    waits = [b for b in report.bars if b.kind == "wait"]
    assert len(waits) == report.waits >= 20 and all(b.what == "limiter llm" for b in waits)
    [lim] = report.limiters
    assert (lim.name, lim.max_concurrency, lim.peak_in_flight, lim.calls) == ("llm", 3, 3, 24)
    assert lim.wait_s > 0 and lim.waits >= 20 and lim.users == {"AskInside": "exec"}
    assert 2.0 < lim.mean_in_flight <= 3.0 and lim.full_share > 0.5
    # the run's own counts agree with the report
    info = runner.last_run
    assert info is not None
    assert info.nodes["AskInside"].peak_in_flight == 3
    assert info.limiters["llm"].peak_in_flight == 3


class BeforeLimiter(fk.AsyncParallelBatchNode):
    """Each call does something for a few ms before taking limiter "llm": a full garbage
    collection (which pauses every call), or its own work."""

    def __init__(self, before: str) -> None:
        super().__init__()
        self.before = before

    async def prep_async(self, shared):
        return range(6)

    async def exec_async(self, item):
        t0 = time.monotonic()
        if self.before == "collect":
            gc.collect()
        else:
            while time.monotonic() - t0 < 0.004:
                pass
        took = time.monotonic() - t0
        limiter = fk.current_limiter("llm")
        assert limiter is not None
        await limiter.acquire()
        try:
            await asyncio.sleep(0.01)
        finally:
            limiter.release()
        return took


@pytest.mark.parametrize("before", ["collect", "work"])
async def test_garbage_collection_before_a_limiter_is_not_running_but_own_work_is(
    tmp_path: Path, before: str
) -> None:
    gc.freeze()  # a collection sees only the heap below, not the whole test session's
    try:
        heap = [[{} for _ in range(10)] for _ in range(60_000)]  # a collection takes ms
        shared: dict = {}
        limits = {"llm": fk.Limit(max_concurrency=1)}
        runner = fk.Runner(limits=limits, report=tmp_path, progress=False, detect_blocking=None)
        node = BeforeLimiter(before)

        async def post_async(shared, prep_res, exec_res):
            shared["took"] = exec_res

        node.post_async = post_async  # type: ignore[method-assign]
        await runner.run_async(fk.AsyncFlow(start=node), shared)
    finally:
        gc.unfreeze()
    assert heap and min(shared["took"]) > 2 * fk.events.INSTANT  # each stretch is not instant
    report = load_report(tmp_path)
    runs = [b for b in report.bars if b.kind == "run"]
    info = runner.last_run
    assert info is not None
    peak = node_report(report, "BeforeLimiter").peak_in_flight
    if before == "collect":  # the pause is nobody's work: one running stretch per call
        assert len(runs) == 6
        assert peak == info.nodes["BeforeLimiter"].peak_in_flight == 1
    else:  # work before the limiter (all but the first call wait) runs beside the holder
        assert len(runs) == 1 + 5 * 2
        assert peak >= 2 and info.nodes["BeforeLimiter"].peak_in_flight >= 2


async def test_a_limiter_the_runner_takes_is_listed_with_its_rate_and_users(
    tmp_path: Path,
) -> None:
    class Paced(fk.AsyncParallelBatchNode):
        uses = ("api",)

        async def prep_async(self, shared):
            return range(6)

        async def exec_async(self, item):
            await asyncio.sleep(0.001)

    runner = fk.Runner(limits={"api": fk.Limit(rpm=1200)}, report=tmp_path, progress=False)
    await runner.run_async(Paced(), {})
    [lim] = load_report(tmp_path).limiters
    assert lim.users == {"Paced": "runner"} and lim.calls == 6 and lim.rpm == 1200
    assert lim.achieved_rpm is not None and 900 < lim.achieved_rpm <= 1200 * 1.05
    assert lim.waits == 5  # the first start is free, the next five are paced 50 ms apart
    html = (tmp_path / "report.html").read_text()
    assert '<section id="limiters">' in html and "1200 rpm" in html


async def test_waits_inside_exec_do_not_count_and_usage_reaches_the_node_table(
    tmp_path: Path,
) -> None:
    class Backoff(fk.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return range(4)

        async def exec_async(self, item):
            with fk.waiting("retry backoff"):
                await asyncio.sleep(0.05)
            fk.record_usage(calls=1, prompt_tokens=10, completion_tokens=5, llm_retries=1)
            await asyncio.sleep(0.01)

    await fk.Runner(report=tmp_path, progress=False).run_async(Backoff(), {})
    report = load_report(tmp_path)
    node = node_report(report, "Backoff")
    assert 0.03 < node.exec_time < 0.2  # 4 x 10 ms running, not 4 x 60 ms
    assert node.wait_time >= 4 * 0.05
    assert node.usage == {
        "calls": 4.0,
        "prompt_tokens": 40.0,
        "completion_tokens": 20.0,
        "llm_retries": 4.0,
    }
    assert {b.what for b in report.bars if b.kind == "wait"} == {"retry backoff"}
    html = (tmp_path / "report.html").read_text()
    assert "4 calls, 60 tokens, 4 retries" in html
    rendered = summary_table(report)
    assert [c.header for c in rendered.columns][-4:] == [
        "running",
        "waited",
        "limiter wait",
        "usage",
    ]


class Shaky(fk.AsyncParallelBatchNode):
    on_error = "collect"

    async def prep_async(self, shared):
        return range(4)

    async def exec_async(self, item):
        fk.record_usage(llm_retries=2)
        if item == 3:
            raise ValueError("bad item")
        return item


class ShakyCommand(FlowCommand):
    name = "shaky"

    def build(self, args):
        return fk.AsyncFlow(start=Shaky(), name="shaky"), {}


def test_the_end_of_run_line_agrees_with_the_exit_code_and_counts_retries_in_exec(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["run", "shaky", "--no-store", "--no-progress"], [ShakyCommand()])
    out = capsys.readouterr().out
    assert code == 1
    line = next(line for line in out.splitlines() if "shaky in" in line)
    assert line.startswith("failed shaky in ")
    assert "4 items, 1 failed, 8 retries" in line


class Limited(fk.AsyncParallelBatchNode):
    async def prep_async(self, shared):
        return range(8)

    async def exec_async(self, item):
        limiter = fk.current_limiter("llm")
        assert limiter is not None
        await limiter.acquire()
        try:
            await asyncio.sleep(0.005)
        finally:
            limiter.release()


class LimitedCommand(FlowCommand):
    name = "limited"

    def build(self, args):
        return fk.AsyncFlow(start=Limited(), name="limited"), {}

    def limits(self, args):
        return {"llm": fk.Limit(max_concurrency=2)}


def test_the_end_of_run_summary_names_each_limiter(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        ["run", "limited", "--no-store", "--no-progress", "--report", str(tmp_path)],
        [LimitedCommand()],
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("ok limited in ")
    assert re.search(r"limiter llm \(2 in flight\): peak 2/2 in flight, 8 calls", out)
    assert main(["report", str(tmp_path)], []) == 0
    shown = capsys.readouterr().out
    assert "named limiters" in shown and "Limited (exec)" in shown


async def test_items_queued_for_a_micro_batch_are_drawn_as_waits(tmp_path: Path) -> None:
    class Batched(fk.AsyncParallelBatchNode):
        batch_size = 8
        batch_wait_ms = 40

        async def prep_async(self, shared):
            return range(3)

        async def exec_batch_async(self, items):
            await asyncio.sleep(0.01)
            return list(items)

    await fk.Runner(report=tmp_path, progress=False).run_async(Batched(), {})
    report = load_report(tmp_path)
    waits = [b for b in report.bars if b.kind == "wait"]
    assert [b.what for b in waits] == ["batch"] * 3
    assert all(b.end - b.start >= 0.03 for b in waits)  # the batch waited to fill
    assert node_report(report, "Batched").wait_time >= 3 * 0.03


async def test_current_limiter_still_offers_the_limiters_own_attributes() -> None:
    seen: dict[str, object] = {}

    class Peek(fk.AsyncNode):
        async def exec_async(self, prep_res):
            limiter = fk.current_limiter("llm")
            assert limiter is not None
            await limiter.acquire()
            limiter.release()
            seen["peak"] = limiter.slots.peak
            seen["calls"] = limiter.stats().calls

    await fk.Runner(limits={"llm": fk.Limit(max_concurrency=2)}).run_async(Peek(), {})
    assert seen == {"peak": 1, "calls": 1}
