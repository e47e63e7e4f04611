"""Chapter 12: per-node timeouts.

One hung call used to stall a whole batch: the LLM client has an HTTP timeout, but a
scraper stuck on a socket, a sync SDK that never returns or a CPU loop that never ends have
none. ``timeout = SECONDS`` on a node bounds each try of its exec, wherever it runs:

- on the event loop, the call is cancelled;
- in a thread, its result is abandoned (Python cannot stop a thread) and the pool starts
  another thread, so the node keeps its workers;
- in a worker process, the worker is killed and a fresh one takes the next item.

A timed-out try is a failure like any other: retried under the node's retry policy, then
its fallback or its on_error policy. The report names it, and every try that timed out is
counted (``NodeStats.timeouts``) and said (a ``TimedOut`` event).

Run: python cookbook/12_timeouts.py
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import flowkit as fk

RELEASE = threading.Event()  # what the stuck SDK call waits for (set once we are done)


class Fetch(fk.AsyncParallelBatchNode):
    """Fetches pages; page 7's first try hangs on a socket that never answers."""

    timeout = 0.5
    retry = fk.Retry(attempts=2, initial=0.1, jitter=0)

    async def prep_async(self, shared):
        return list(range(12))

    async def exec_async(self, page):
        if page == 7 and self.cur_retry == 0:
            await asyncio.Event().wait()  # a read that never returns
        await asyncio.sleep(0.05)
        return f"page {page}"

    async def post_async(self, shared, prep_res, pages):
        shared["pages"] = pages


class Parse(fk.BatchNode):
    """A blocking SDK call in a thread: page 3 blocks for good, so it is recorded as failed."""

    executor = "thread"
    timeout = 0.5
    on_error = "collect"

    def prep(self, shared):
        return shared["pages"]

    def exec(self, page):
        if page == "page 3":
            RELEASE.wait()
        return page.upper()

    def post(self, shared, prep_res, parsed):
        shared["parsed"] = parsed


def main() -> None:
    fetch, parse = Fetch(), Parse()
    fetch >> parse
    report = Path(tempfile.mkdtemp()) / "report"
    runner = fk.Runner(report=report, progress=False, thread_workers=4)
    shared: dict = {}
    started = time.perf_counter()
    try:
        runner.run(fk.AsyncFlow(start=fetch), shared)
    finally:
        RELEASE.set()  # let the abandoned thread end
    took = time.perf_counter() - started
    info = runner.last_run
    assert info is not None
    print(f"12 pages fetched and parsed in {took:.2f} s, with two calls that never returned")
    for name in ("Fetch", "Parse"):
        stats = info.nodes[name]
        print(
            f"{name}: {stats.items} items, {stats.timeouts} try timed out after "
            f"{stats.timeout:g} s, {stats.retries} retried, {stats.failed} failed"
        )
    record = shared["parsed"][3]
    print(f"Parse item 3 ended as {record.error_type}: {record.message[:70]}...")
    data = json.loads((report / "report.json").read_text())
    for node in data["nodes"]:
        for finding in node["findings"]:
            if "timeout" in finding:
                print(f"report, {node['name']}: {finding}")
    assert shared["pages"][7] == "page 7" and shared["parsed"][8] == "PAGE 8"


if __name__ == "__main__":
    main()
