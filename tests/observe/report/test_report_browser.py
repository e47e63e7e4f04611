"""The HTML report in a real browser: no console errors, and the timeline is drawn."""

from __future__ import annotations

import asyncio
import html
import json
import re
import subprocess
from pathlib import Path

import pytest

import flowkit as fk
from tests.observe.report.browser import browse, needs_browser

pytestmark = needs_browser


class Fetch(fk.AsyncParallelBatchNode):
    max_concurrency = 4

    async def prep_async(self, shared):
        return range(12)

    async def exec_async(self, item):
        await asyncio.sleep(0.01)
        if item == 5:
            raise ValueError("<script>alert('no')</script> is data, not markup")
        return item


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return browse(tmp_path / "profile", *args)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    flow = fk.AsyncFlow(start=Fetch(on_error="collect", name="Fetch <&> it"), name="browser")
    fk.Runner(report=out, progress=False).run(flow, {})
    return out / "report.html"


def test_the_report_opens_without_console_errors_and_draws_the_timeline(
    report_page: Path, tmp_path: Path
) -> None:
    done = chromium(tmp_path, "--dump-dom", report_page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Uncaught" not in done.stderr and "SyntaxError" not in done.stderr
    dom = done.stdout
    assert '<svg id="timeline"' in dom
    assert len(re.findall(r'<rect class="bar', dom)) == 12
    assert "Fetch &lt;&amp;&gt; it" in dom  # names are escaped, not markup
    assert "<script>alert" not in dom


def test_the_report_renders_to_a_screenshot(report_page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = chromium(tmp_path, f"--screenshot={shot}", report_page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class AskInside(fk.AsyncParallelBatchNode):
    async def prep_async(self, shared):
        return range(24)

    async def exec_async(self, item):
        limiter = fk.current_limiter("llm")
        assert limiter is not None
        await limiter.acquire()
        try:
            await asyncio.sleep(0.01)
        finally:
            limiter.release()
        return item


def test_the_browser_shows_limiter_waits_apart_from_running_calls(tmp_path: Path) -> None:
    out = tmp_path / "report"
    limits = {"llm": fk.Limit(max_concurrency=3)}
    fk.Runner(limits=limits, report=out, progress=False).run(AskInside(), {})
    done = chromium(tmp_path, "--dump-dom", (out / "report.html").as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Uncaught" not in done.stderr
    dom = done.stdout
    running = re.findall(r'<rect class="bar" data-node="AskInside"[^>]*y="([\d.]+)"', dom)
    assert len(running) == 24
    assert len(set(running)) == 3  # three lanes: what the limiter let run
    waits = re.findall(r'<rect class="wait"[^>]*><title>([^<]*)</title>', dom)
    assert len(waits) >= 20 and all("waiting for limiter llm" in t for t in waits)
    assert '<section id="limiters">' in dom
    assert re.search(r"<td>llm</td><td>3 in flight</td><td>24</td><td>[\d.]+ / 3 / 3</td>", dom)


# -- a 1,000-item run: the concurrency chart, zoom, and a page that fits 1,400 px ----------

PROBE = """
<script>
(function () {
  function box(el) { return el.getBoundingClientRect(); }
  function hits(a, b) {
    return a.left < b.right && a.right > b.left && a.top < b.bottom && a.bottom > b.top;
  }
  var out = {width: window.innerWidth};
  out.pageScrolls = document.documentElement.scrollWidth > window.innerWidth;
  out.sectionsScrolling = Array.prototype.filter.call(
    document.querySelectorAll("section"), function (s) { return s.scrollWidth > s.clientWidth; }
  ).map(function (s) { return s.querySelector("h2").textContent; });
  out.usageCut = Array.prototype.filter.call(document.querySelectorAll("td.usage"), function (td) {
    return box(td).right > box(td.closest("section")).right || td.scrollWidth > td.clientWidth;
  }).length;
  var label = box(document.querySelector("#timeline text.split"));
  out.labelOnBars = Array.prototype.filter.call(
    document.querySelectorAll("#timeline rect.bar, #timeline rect.wait"),
    function (r) { return hits(box(r), label); }
  ).length;
  out.panels = document.querySelectorAll("#concurrency text.panel").length;
  out.ticks = Array.prototype.map.call(
    document.querySelectorAll("#timeline text.tick"), function (t) { return t.textContent; }
  );
  out.zoom = Array.prototype.map.call(
    document.querySelectorAll("g.zoom"), function (g) { return g.getAttribute("transform"); }
  );
  document.body.setAttribute("data-probe", JSON.stringify(out));
})();
</script>
"""


class Many(fk.AsyncParallelBatchNode):
    max_concurrency = 32
    uses = ("api",)

    async def prep_async(self, shared):
        return range(1000)

    async def exec_async(self, item):
        await asyncio.sleep(0.001 + 0.002 * (item % 3))
        return item


class Ask(fk.AsyncParallelBatchNode):
    async def prep_async(self, shared):
        return range(300)

    async def exec_async(self, item):
        limiter = fk.current_limiter("llm")
        assert limiter is not None
        await limiter.acquire()
        try:
            await asyncio.sleep(0.002)
        finally:
            limiter.release()
        fk.record_usage(
            calls=1,
            prompt_tokens=120,
            completion_tokens=30,
            llm_retries=0,
            cache_hits=item % 2,
            cached_tokens=60,
            reasoning_tokens=12,
        )
        return item


@pytest.fixture(scope="module")
def big_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("big")
    many = Many()
    many >> Ask()
    limits = {"api": fk.Limit(max_concurrency=8), "llm": fk.Limit(max_concurrency=4)}
    flow = fk.AsyncFlow(start=many, name="thousand")
    fk.Runner(limits=limits, report=out, progress=False).run(flow, {})
    return out


def probe(tmp_path: Path, report: Path, fragment: str = "") -> dict:
    page = tmp_path / "probed.html"
    page.write_text((report / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    done = chromium(tmp_path, "--dump-dom", page.as_uri() + fragment)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Uncaught" not in done.stderr
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, done.stdout[-2000:]
    return json.loads(html.unescape(found.group(1)))


def test_a_thousand_item_run_fits_1400_px_with_its_chart_and_label_clear(
    big_report: Path, tmp_path: Path
) -> None:
    seen = probe(tmp_path, big_report)
    assert seen["width"] == 1400
    assert not seen["pageScrolls"] and seen["sectionsScrolling"] == []
    assert seen["usageCut"] == 0
    assert seen["labelOnBars"] == 0  # "running ↑ · waiting ↓" sits in its own band
    assert seen["panels"] == 4  # limiters api and llm, nodes Many and Ask
    shot = tmp_path / "thousand.png"
    done = chromium(tmp_path, f"--screenshot={shot}", (big_report / "report.html").as_uri())
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_window_in_the_address_zooms_every_chart_and_redraws_the_ticks(
    big_report: Path, tmp_path: Path
) -> None:
    whole = probe(tmp_path, big_report)
    assert whole["ticks"][0] == "0.0 s" or whole["ticks"][0].startswith("0")
    zoomed = probe(tmp_path, big_report, "#window=0.1,0.2")
    times = [float(t.removesuffix(" s")) for t in zoomed["ticks"]]
    assert times and all(0.1 - 1e-9 <= t <= 0.2 + 1e-9 for t in times)
    report = json.loads((big_report / "report.json").read_text())
    span = max(report["wall_time"], *(b["end"] for b in report["bars"]))
    k = float(zoomed["zoom"][0].removeprefix("matrix(").split()[0])
    assert k == pytest.approx(span / 0.1, rel=1e-3)
    assert len(set(zoomed["zoom"])) == 1 and len(zoomed["zoom"]) == 5  # 4 panels + timeline
