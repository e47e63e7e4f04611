"""A run's report inline (``RunInfo._repr_html_``), and sync runs called on a running event
loop, as in a notebook cell: progress, the report, and an interrupt that stops the run."""

from __future__ import annotations

import _thread
import asyncio
import re
import threading
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.notebook import in_notebook
from flowkit.report.inline import SCOPE, scoped


class Ask(fk.AsyncParallelBatchNode):
    async def prep_async(self, shared):
        return range(shared.get("n", 60))

    async def exec_async(self, item):
        limiter = fk.current_limiter("api")
        assert limiter is not None
        await limiter.acquire()
        try:
            await asyncio.sleep(0.005)
        finally:
            limiter.release()
        if item == 13:
            raise ValueError("item 13 <b>is</b> bad")
        return item


def runner(**options) -> fk.Runner:
    return fk.Runner(limits={"api": fk.Limit(max_concurrency=3)}, progress=False, **options)


def test_a_recorded_run_shows_its_report_inline(tmp_path: Path) -> None:
    r = runner(report=tmp_path)
    r.run(Ask(on_error="collect"), {})
    assert r.last_run is not None
    page = r.last_run._repr_html_()
    assert page.startswith('<div class="flowkit-report">') and page.endswith("</div>")
    assert '<span class="status failed">failed</span>' in page  # an item failed
    assert '<svg id="concurrency"' in page and "<h2>Nodes</h2>" in page
    assert re.search(r"<td>api</td><td>3 in flight</td><td>60</td><td>[\d.]+ / 3 / 3</td>", page)
    assert "item 13 &lt;b&gt;is&lt;/b&gt; bad" in page and "<b>is</b>" not in page
    assert "60 items · 1 failed" in page


def test_a_run_nothing_recorded_shows_its_counts_and_says_how_to_get_the_chart() -> None:
    r = runner(detect_blocking=None)
    r.run(Ask(on_error="collect"), {"n": 20})
    assert r.last_run is not None
    page = r.last_run._repr_html_()
    assert "<svg" not in page and "Runner(report=DIR)" in page
    assert re.search(r"Ask<div class=\"paths\">Ask</div></td><td>async</td><td>20</td>", page)


def test_the_inline_style_applies_inside_the_report_only() -> None:
    css = scoped("body { margin: 0 } th, td { padding: 1px } /* x */ :root { --a: 1 }", SCOPE)
    assert css.splitlines() == [
        ".flowkit-report {margin: 0}",
        ".flowkit-report th, .flowkit-report td {padding: 1px}",
        ".flowkit-report {--a: 1}",
    ]


def test_two_reports_on_one_page_keep_their_chart_ids_apart(tmp_path: Path) -> None:
    pages = []
    for k in range(2):
        r = runner(report=tmp_path / str(k))
        r.run(Ask(on_error="collect"), {"n": 10})
        assert r.last_run is not None
        pages.append(r.last_run._repr_html_())
    ids = [set(re.findall(r'id="(clip-[^"]+)"', page)) for page in pages]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    for page, mine in zip(pages, ids, strict=True):
        assert set(re.findall(r"url\(#(clip-[^)]+)\)", page)) <= mine


def test_a_sync_run_on_a_running_loop_reports_like_any_other(tmp_path: Path) -> None:
    r = runner(report=tmp_path)

    async def cell() -> None:  # a notebook cell: the loop is running, the call is sync
        r.run(Ask(on_error="collect"), {})

    asyncio.run(cell())
    assert r.last_run is not None and r.last_run.nodes["Ask"].items == 60
    assert '<svg id="concurrency"' in r.last_run._repr_html_()
    assert not in_notebook()  # pytest is no Jupyter kernel


class Slow(fk.AsyncParallelBatchNode):
    max_concurrency = 2

    def __init__(self, started: threading.Event) -> None:
        super().__init__()
        self.started = started

    async def prep_async(self, shared):
        return range(10_000)

    async def exec_async(self, item):
        self.started.set()
        await asyncio.sleep(0.01)
        return item


def test_an_interrupt_while_a_sync_run_blocks_a_running_loop_stops_the_run() -> None:
    started = threading.Event()
    r = runner()

    async def cell() -> None:
        threading.Thread(target=lambda: started.wait(10) and _thread.interrupt_main()).start()
        r.run(Slow(started), {})

    loop = asyncio.new_event_loop()  # as a kernel's loop: no SIGINT handler of asyncio's
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(cell())
    finally:
        loop.close()
    info = r.last_run
    assert info is not None and info.status == "interrupted"
    assert 0 < info.nodes["Slow"].items < 10_000
    assert not [t for t in threading.enumerate() if t.name.startswith("flowkit-sync-run")]
