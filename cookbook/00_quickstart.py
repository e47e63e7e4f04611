"""Quickstart: the same batch three ways, timed.

A PocketFlow-style node summarises 40 "documents" (each call waits 50 ms, like an API call),
first one at a time (AsyncBatchNode), then 10 at a time (AsyncParallelBatchNode with
max_concurrency=10). A CPU-bound node then scores 16 items sequentially and on worker
processes. The run's own counts show how parallel each node really was.

Run: python cookbook/00_quickstart.py
"""

from __future__ import annotations

import asyncio
import time

import flowkit as fk


class Summarise(fk.AsyncBatchNode):
    """One call at a time: the 'batch pipeline' that is really a for loop."""

    async def prep_async(self, shared):
        return shared["documents"]

    async def exec_async(self, doc):
        await asyncio.sleep(0.05)  # stands in for an LLM call
        return doc.upper()[:20]

    async def post_async(self, shared, prep_res, exec_res):
        shared["summaries"] = exec_res


class ParallelSummarise(fk.AsyncParallelBatchNode, Summarise):
    """Same hooks, at most 10 calls in flight."""

    max_concurrency = 10


class Score(fk.BatchNode):
    """Pure-Python CPU work: threads would not help (the GIL); processes do."""

    def prep(self, shared):
        return range(16)

    def exec(self, seed):
        total = 0
        for i in range(600_000):
            total = (total + i * seed) % 1_000_003
        return total

    def post(self, shared, prep_res, exec_res):
        shared["scores"] = exec_res


def timed(runner: fk.Runner, node: fk.BaseNode, shared: dict) -> float:
    t0 = time.perf_counter()
    runner.run(node, shared)
    return time.perf_counter() - t0


def main() -> None:
    runner = fk.Runner()
    shared = {"documents": [f"document number {i} about flowkit" for i in range(40)]}
    seq = timed(runner, Summarise(), shared)
    par = timed(runner, ParallelSummarise(), shared)
    assert runner.last_run is not None
    peak = runner.last_run.nodes["ParallelSummarise"].peak_in_flight
    print(
        f"summarise 40 docs: one at a time {seq:.2f} s, 10 at a time {par:.2f} s "
        f"({seq / par:.1f}x faster, peak in flight {peak})"
    )

    cpu_seq = timed(runner, Score(), shared)
    cpu_par = timed(runner, Score(executor="process"), shared)
    print(
        f"score 16 items: sequential {cpu_seq:.2f} s, processes {cpu_par:.2f} s "
        f"({cpu_seq / cpu_par:.1f}x faster on {runner.settings.process_workers} cores)"
    )


if __name__ == "__main__":
    main()
