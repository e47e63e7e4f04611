"""The live view in a real browser, during a real ``flowkit run --live``: the page changes as
the run goes on, never shows more running than the limits allow, and ends as the report."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.observe.report.browser import browse, command, needs_browser

pytestmark = needs_browser

FLOW = """
import asyncio
from pathlib import Path

import flowkit as fk


class Produce(fk.AsyncParallelBatchNode):
    '''Items keep coming until the test opens the gate.'''

    max_concurrency = 6
    uses = ("api",)

    async def prep_async(self, shared):
        gate = Path(shared["gate"])

        async def items():
            i = 0
            while i < 30 or not gate.exists():
                yield i
                i += 1

        return items()

    async def exec_async(self, item):
        await asyncio.sleep(0.02 + 0.01 * (item % 3))
        if item % 50 == 7:
            raise ValueError(f"item {item} is bad")
        return item


class Ask(fk.AsyncParallelBatchNode):
    uses = ("llm",)

    async def prep_async(self, shared):
        return range(40)

    async def exec_async(self, item):
        await asyncio.sleep(0.01)
        return item


def build():
    produce = Produce(on_error="collect")
    produce >> Ask()
    return fk.AsyncFlow(start=produce, name="watched")
"""

LIMITS = {"api": 3, "llm": 4, "Produce": 6}


def live_data(dom: str) -> dict:
    found = re.search(r'<script type="application/json" id="live-data">(.*?)</script>', dom)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)).replace("<\\/", "</"))


def within_limits(data: dict) -> None:
    for s in data["series"]:
        if s["name"] in LIMITS:
            assert s["running"] <= LIMITS[s["name"]] and s["peak"] <= LIMITS[s["name"]], s


def test_the_live_page_moves_stays_within_limits_and_becomes_the_report(tmp_path: Path) -> None:
    (tmp_path / "watched.py").write_text(textwrap.dedent(FLOW))
    gate, report = tmp_path / "gate", tmp_path / "report"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), str(tmp_path)])}
    limits = ["--limit", "api=3", "--limit", "llm=4"]
    options = ["--report", str(report), "--no-store", "--no-progress", *limits]
    options += ["--shared", json.dumps({"gate": str(gate)})]
    run = subprocess.Popen(
        [sys.executable, "-m", "flowkit.cli", "run", "watched:build", "--live", "0", *options],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert run.stderr is not None
        line = run.stderr.readline()
        found = re.search(r"live view of watched at (http://127\.0\.0\.1:\d+/)", line)
        assert found, line + run.stderr.read()
        url = found.group(1)
        profile = tmp_path / "profile"
        shots, seen, taken = [], [], 0.0
        for k in range(2):
            if k:  # the two screenshots are some seconds apart
                time.sleep(max(0.0, 2.5 - (time.monotonic() - taken)))
            taken = time.monotonic()
            shot = tmp_path / f"live-{k}.png"
            done = browse(profile, f"--screenshot={shot}", url, height=1000)
            assert done.returncode == 0, done.stderr[-2000:]
            shots.append(shot.read_bytes())
            dom = browse(profile, "--dump-dom", url, height=1000)
            assert dom.returncode == 0 and "Uncaught" not in dom.stderr, dom.stderr[-2000:]
            seen.append(live_data(dom.stdout))
        assert shots[0][:8] == b"\x89PNG\r\n\x1a\n" and shots[0] != shots[1]
        assert seen[0]["items"] < seen[1]["items"] and seen[0]["elapsed"] < seen[1]["elapsed"]
        for data in seen:
            within_limits(data)
        # A page open when the run ends becomes the final report (the browser waits for it).
        wait = "--virtual-time-budget=60000"
        final = subprocess.Popen(
            command(profile, wait, "--dump-dom", url, height=1000),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)  # let it connect before the run ends
        gate.touch()
        dom_text, errors = final.communicate(timeout=120)
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 1, err  # some items failed
    assert out.startswith("failed watched in") and "report: " in out
    assert "Uncaught" not in errors
    assert '<svg id="timeline"' in dom_text and 'id="live-data"' not in dom_text
    saved = json.loads((report / "report.json").read_text())
    items = sum(n["items"] for n in saved["nodes"])
    meta = re.search(r'<div class="meta">([^<]*)</div>', dom_text)
    assert meta and f"{items:,} items · {saved['error_count']:,} failed" in meta.group(1)
    for node in saved["nodes"]:
        row = re.search(
            rf'{re.escape(node["name"])}<div class="paths">.*?</td><td>\w+</td>'
            r"<td>([\d,]+)</td><td[^>]*>([\d,]+)</td>",
            dom_text,
        )
        assert row, node["name"]
        assert (int(row.group(1).replace(",", "")), int(row.group(2).replace(",", ""))) == (
            node["items"],
            node["failed"],
        )
    limited = [(n["name"], n["peak_in_flight"], n["limit"]) for n in saved["nodes"] if n["limit"]]
    limited += [(m["name"], m["peak_in_flight"], m["max_concurrency"]) for m in saved["limiters"]]
    assert {name for name, _, _ in limited} == {"Produce", "api", "llm"}
    assert all(peak <= limit == LIMITS[name] for name, peak, limit in limited), limited
