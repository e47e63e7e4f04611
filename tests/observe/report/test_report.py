"""Run report: exact per-node statistics, a timeline whose lanes match the overlap, files."""

from __future__ import annotations

import asyncio
import builtins
import itertools
import json
import warnings
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.errors import FlowkitWarning
from flowkit.report import ReportWriter, RunReport, load_report
from flowkit.report.files import render_files
from flowkit.report.writer import assign_lanes, overlap


class Gate:
    """Holds every exec call until ``target`` are in flight at once, counting the peak."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.in_flight = 0
        self.peak = 0
        self.open = asyncio.Event()

    async def hold(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.target:
            self.open.set()
        try:
            await asyncio.wait_for(self.open.wait(), timeout=5)
        finally:
            self.in_flight -= 1


def gated(gate: Gate, items: int, **options: object) -> fk.AsyncParallelBatchNode:
    class Gated(fk.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return range(items)

        async def exec_async(self, item):
            await gate.hold()
            return item

    return Gated(**options)  # type: ignore[arg-type]


def node_report(report: RunReport, name: str):
    return next(n for n in report.nodes if n.name == name)


async def test_peak_in_flight_equals_the_counted_peak(tmp_path: Path) -> None:
    gate = Gate(target=5)
    flow = fk.AsyncFlow(start=gated(gate, 20, max_concurrency=5), name="pipeline")
    await fk.Runner(report=tmp_path, progress=False).run_async(flow, {})
    report = load_report(tmp_path)
    gated_node = node_report(report, "Gated")
    assert gate.peak == 5
    assert gated_node.peak_in_flight == 5
    assert gated_node.limit == 5
    assert gated_node.items == 20
    assert report.lanes == 5  # one lane per slot: the timeline shows the overlap
    assert 1 < gated_node.mean_in_flight <= 5
    assert gated_node.speedup == pytest.approx(
        gated_node.exec_time / gated_node.wall_time, rel=1e-9
    )


async def test_report_files_exist_and_name_every_node(tmp_path: Path) -> None:
    class Load(fk.AsyncNode):
        async def exec_async(self, _):
            return 1

    class Fan(fk.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return range(6)

        async def exec_async(self, item):
            await asyncio.sleep(0.001)

    flow = fk.AsyncFlow(start=Load(), name="pipeline")
    flow.start_node >> Fan(name="Fan-out")  # type: ignore[operator]
    await fk.Runner(report=tmp_path / "out", progress=False).run_async(flow, {})
    out = tmp_path / "out"
    data = json.loads((out / "report.json").read_text())
    page = (out / "report.html").read_text()
    assert {n["name"] for n in data["nodes"]} == {"Load", "Fan-out"}
    for name in ("Load", "Fan-out"):
        assert name in page
    assert '<svg id="timeline"' in page
    assert page.count('class="bar') == 7
    assert "http://" not in page and "https://" not in page  # self-contained


async def test_statistics_stay_exact_when_the_timeline_is_sampled(tmp_path: Path) -> None:
    class Many(fk.AsyncParallelBatchNode):
        max_concurrency = 50

        async def prep_async(self, shared):
            return range(500)

        async def exec_async(self, item):
            await asyncio.sleep(0)

    writer = ReportWriter(tmp_path, max_bars=40)
    await fk.Runner(on_event=writer, progress=False).run_async(Many(), {})
    report = writer.report
    assert report is not None
    assert report.sampled and len(report.bars) == 40 and report.spans == 500
    assert node_report(report, "Many").items == 500
    assert "uniform sample of 40" in (tmp_path / "report.html").read_text()


async def test_retries_and_failures_are_counted_and_messages_listed(tmp_path: Path) -> None:
    class Flaky(fk.AsyncParallelBatchNode):
        on_error = "collect"

        async def prep_async(self, shared):
            return range(4)

        async def exec_async(self, item):
            if item == 1 and self.cur_retry == 0:
                raise ConnectionError("try again")
            if item == 3:
                raise ValueError("three is bad")
            return item

    runner = fk.Runner(report=tmp_path, progress=False)
    await runner.run_async(Flaky(max_retries=2), {})
    report = load_report(tmp_path)
    flaky = node_report(report, "Flaky")
    assert (flaky.items, flaky.failed, flaky.retries) == (4, 1, 2)
    [error] = report.errors
    assert (error.index, error.error_type, error.message) == (3, "ValueError", "three is bad")
    assert "Traceback" in error.traceback  # the collected error's traceback


async def test_a_run_that_collected_failures_is_not_reported_ok(tmp_path: Path) -> None:
    class Some(fk.AsyncParallelBatchNode):
        on_error = "collect"

        async def prep_async(self, shared):
            return range(3)

        async def exec_async(self, item):
            if item == 1:
                raise ValueError("one is bad")
            return item

    await fk.Runner(report=tmp_path, progress=False).run_async(Some(), {})
    report = load_report(tmp_path)
    assert (report.ok, report.status, report.error_count) == (False, "done", 1)
    assert report.outcome == "failed"  # as the command line's end line and RunInfo.ok say
    assert 'class="status failed"' in (tmp_path / "report.html").read_text()


async def test_a_failed_run_still_writes_its_report(tmp_path: Path) -> None:
    class Boom(fk.AsyncNode):
        async def exec_async(self, _):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await fk.Runner(report=tmp_path, progress=False).run_async(Boom(), {})
    report = load_report(tmp_path)
    assert report.ok is False
    assert report.error_count == 1
    assert 'class="status failed"' in (tmp_path / "report.html").read_text()


async def test_limiter_waits_are_reported_and_explain_low_concurrency(tmp_path: Path) -> None:
    class Call(fk.AsyncParallelBatchNode):
        max_concurrency = 8
        uses = ("api",)

        async def prep_async(self, shared):
            return range(8)

        async def exec_async(self, item):
            await asyncio.sleep(0.001)

    runner = fk.Runner(limits={"api": fk.Limit(rpm=6000)}, report=tmp_path, progress=False)
    await runner.run_async(Call(), {})
    call = node_report(load_report(tmp_path), "Call")
    assert call.limiter_wait["api"] > 0
    [finding] = call.findings
    assert "limiter 'api'" in finding


async def test_too_few_items_is_named_as_the_cause(tmp_path: Path) -> None:
    gate = Gate(target=3)
    await fk.Runner(report=tmp_path, progress=False).run_async(
        gated(gate, 3, max_concurrency=16), {}
    )
    [finding] = node_report(load_report(tmp_path), "Gated").findings
    assert "only 3 items for a limit of 16" in finding


def test_overlap_counts_touching_spans_as_sequential() -> None:
    assert overlap([0.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == (1, 3.0)
    assert overlap([0.0, 0.5, 5.0], [1.0, 1.5, 6.0]) == (2, 2.5)
    assert overlap([2.0, 2.0], [2.0, 3.0]) == (1, 1.0)  # a zero-length span
    assert overlap([], []) == (0, 0.0)


def test_lanes_equal_the_peak_overlap() -> None:
    report = RunReport.model_validate(
        {
            "run_id": "r",
            "flow": "f",
            "ok": True,
            "started_at": "2024-01-01T00:00:00Z",
            "wall_time": 4.0,
            "nodes": [],
            "spans": 4,
            "lanes": 0,
            "bars": [
                {"node": "a", "index": i, "lane": 0, "start": s, "end": e, "ok": True}
                for i, (s, e) in enumerate([(0, 2), (1, 3), (2, 4), (2.5, 3.5)])
            ],
            "blocks": [],
            "error_count": 0,
            "errors": [],
        }
    )
    assert assign_lanes(report.bars) == 3
    lanes: dict[int, list[tuple[float, float]]] = {}
    for bar in report.bars:
        lanes.setdefault(bar.lane, []).append((bar.start, bar.end))
    for spans in lanes.values():  # no two bars in one lane overlap
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


async def test_without_matplotlib_the_png_is_skipped_with_one_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowkit.report.files as report_module

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    await fk.Runner(report=tmp_path, progress=False).run_async(gated(Gate(1), 1), {})
    report = load_report(tmp_path)
    (tmp_path / "report.png").unlink(missing_ok=True)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    monkeypatch.setattr(report_module, "_png_note_given", False)
    with pytest.warns(FlowkitWarning, match=r"pip install 'flowkit\[report\]'"):
        assert render_files(report, tmp_path) == [tmp_path / "report.html"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        render_files(report, tmp_path)  # said once only
    assert not (tmp_path / "report.png").exists()


async def test_with_matplotlib_the_png_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    await fk.Runner(report=tmp_path, progress=False).run_async(gated(Gate(2), 4), {})
    png = tmp_path / "report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_the_png_numbers_running_and_waiting_lanes_apart_in_whole_numbers(
    tmp_path: Path,
) -> None:
    pytest.importorskip("matplotlib")
    from flowkit.report.files import png_figure

    limits = {"api": fk.Limit(max_concurrency=3)}

    class Queued(fk.AsyncParallelBatchNode):
        uses = ("api",)

        async def prep_async(self, shared):
            return range(12)

        async def exec_async(self, item):
            await asyncio.sleep(0.005)

    await fk.Runner(limits=limits, report=tmp_path, progress=False).run_async(Queued(), {})
    report = load_report(tmp_path)
    assert report.lanes == 3 and report.wait_lanes >= 2
    fig = png_figure(report)
    renderer = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") else None
    if renderer is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    running, waiting = fig.axes[:2]
    for ax, lanes in ((running, report.lanes), (waiting, report.wait_lanes)):
        shown = [t for t in ax.get_yticks() if -0.5 <= t <= lanes - 0.5]
        assert shown and all(float(t).is_integer() and 0 <= t < lanes for t in shown)
    assert "running" in running.get_ylabel() and "waiting" in waiting.get_ylabel()
    # the labels sit beside their own axes, never over a bar
    for ax in (running, waiting):
        label = ax.yaxis.label.get_window_extent(renderer)
        assert label.x1 <= ax.get_window_extent(renderer).x0
