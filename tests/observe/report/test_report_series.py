"""The report's "concurrency over time" series: step counts that agree with the node table,
waits per limiter, exact limiter holders when the runner reports them, and long runs cut
into stretches that keep both the mean and the peak."""

from __future__ import annotations

import asyncio
import math
import random
import time
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.events import LimiterChanged, RunEnded, RunStarted, Waited
from flowkit.limits import NamedLimiter
from flowkit.report import ReportWriter, RunReport, load_report
from flowkit.report.model import Series
from flowkit.report.series import BUCKETS, MAX_STEPS, levels, merge, series
from flowkit.results import RunInfo


def area(s: Series, end: float, values: list[float]) -> float:
    """The integral of a step series up to ``end``."""
    ends = [*s.t[1:], end]
    return math.fsum(v * (b - a) for a, b, v in zip(s.t, ends, values, strict=True))


def by_name(report: RunReport, name: str) -> Series:
    return next(s for s in report.series if s.name == name)


def test_levels_count_open_spans_and_touching_spans_do_not_overlap() -> None:
    times, counts = levels([0.0, 1.0, 1.0, 2.0], [1.0, 3.0, 2.0, 3.0])
    assert times == [0.0, 1.0, 2.0, 3.0]
    assert counts == [1, 2, 2, 0]  # at 1.0 one ends and two start; at 2.0 one ends, one starts


def test_merge_puts_two_step_functions_on_one_axis() -> None:
    assert merge(([0.0, 2.0], [1, 0]), ([1.0, 2.0, 3.0], [4, 5, 0])) == (
        [0.0, 1.0, 2.0, 3.0],
        [1, 1, 0, 0],
        [0, 4, 5, 0],
    )


class Work(fk.AsyncParallelBatchNode):
    max_concurrency = 6
    uses = ("api",)

    async def prep_async(self, shared):
        return range(30)

    async def exec_async(self, item):
        await asyncio.sleep(0.002 + 0.001 * (item % 5))
        return item


async def test_series_agree_with_the_node_table_and_the_limiter(tmp_path: Path) -> None:
    limits = {"api": fk.Limit(max_concurrency=2)}
    await fk.Runner(limits=limits, report=tmp_path, progress=False).run_async(Work(), {})
    report = load_report(tmp_path)
    [node] = report.nodes
    work, api = by_name(report, "Work"), by_name(report, "api")
    assert (work.kind, work.limit, work.source) == ("node", 6, "calls")
    assert work.peak_running == node.peak_in_flight == 2
    assert area(work, report.wall_time, work.running) == pytest.approx(node.exec_time, rel=1e-3)
    assert area(work, report.wall_time, work.waiting) == pytest.approx(node.wait_time, rel=1e-3)
    assert (api.kind, api.limit, api.source) == ("limiter", 2, "holders")
    assert api.peak_running == report.limiters[0].peak_in_flight == 2
    assert api.peak_waiting >= 1  # items queued for the limiter's two slots
    waited = node.limiter_wait["api"]
    assert area(api, report.wall_time, api.waiting) == pytest.approx(waited, rel=1e-3)


def test_a_limiters_holders_come_exactly_from_its_change_events() -> None:
    writer = ReportWriter("unused")
    writer.start(RunInfo(run_id="r1", started=0.0))
    t0 = time.monotonic()
    writer(RunStarted(t0, "r1", "f"))
    writer(LimiterChanged(t0, "r1", "llm", True, 1))  # held 0-2
    writer(LimiterChanged(t0 + 1.0, "r1", "llm", True, 2))  # held 1-3
    writer(Waited(t0 + 1.0, "r1", "f/Ask", "Ask", 0, -1, "limiter llm", 1.0, "llm"))  # 0-1
    writer(LimiterChanged(t0 + 2.0, "r1", "llm", False, 1))
    writer(LimiterChanged(t0 + 3.0, "r1", "llm", False, 0))
    stats = NamedLimiter("llm", fk.Limit(max_concurrency=2)).stats()
    writer(RunEnded(t0 + 4.0, "r1", "f", True, "done", {"llm": stats}))
    llm = by_name(writer.build(), "llm")
    assert llm.source == "holders" and llm.limit == 2
    assert llm.running == [1.0, 2.0, 1.0, 0.0] and llm.waiting == [1.0, 0.0, 0.0, 0.0]
    assert llm.t == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=1e-3)


def test_a_long_series_is_cut_into_stretches_keeping_mean_and_peak() -> None:
    rng = random.Random(7)
    starts = [rng.uniform(1, 100) for _ in range(2_000)]
    ends = [s + rng.uniform(0.01, 2.0) for s in starts]
    waits = ([s - 0.5 for s in starts], starts)
    span = max(ends)
    cut = series("Node", "node", (starts, ends), waits, span, limit=8)
    times, counts = levels(starts, ends)
    assert len(times) > MAX_STEPS and len(cut.t) == BUCKETS
    assert cut.peak_running == max(counts)
    assert all(p >= m - 1e-9 for p, m in zip(cut.running_peak, cut.running, strict=True))
    for k, lo in enumerate(cut.t):  # each stretch's peak, by brute force on the exact steps
        hi = cut.t[k + 1] if k + 1 < len(cut.t) else span
        inside = [c for t, c in zip(times, counts, strict=True) if lo <= t < hi]
        before = [c for t, c in zip(times, counts, strict=True) if t <= lo]
        assert cut.running_peak[k] == max([*inside, before[-1] if before else 0])
    busy = math.fsum(e - s for s, e in zip(starts, ends, strict=True))
    assert area(cut, span, cut.running) == pytest.approx(busy, rel=1e-3)
    assert area(cut, span, cut.waiting) == pytest.approx(0.5 * len(starts), rel=1e-3)
