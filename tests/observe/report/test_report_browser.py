"""The HTML report in a real browser: no console errors, and the timeline is drawn."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import flowkit as fk

BROWSER = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no chromium binary on PATH (apt-get install chromium) to open the HTML report",
)

HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
    "--enable-logging=stderr",
    "--v=0",
)


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
    assert BROWSER is not None
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [BROWSER, *HEADLESS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


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
