"""Chapter 6: sequential versus parallel, measured.

The same LLM node twice: combined with ``AsyncBatchNode`` it makes one call at a time;
as a ``ParallelLLMNode`` up to 10 at once (the runner's "llm" limit). The simulated
provider takes 100 ms per call, like a fast API, so the difference is the waiting that
parallelism removes. The speedup printed is measured, not assumed: it approaches the
limit only while calls spend their time waiting, not computing.

Run: python cookbook/06_sequential_vs_parallel.py
"""

from __future__ import annotations

import time

import flowkit as fk
from nodes.llm import LLMNode, LLMSettings, ParallelLLMNode, Simulation

SETTINGS = LLMSettings(provider="simulated", simulation=Simulation(latency_s=0.1))


class Summarize(LLMNode, fk.AsyncBatchNode):
    """One call at a time."""

    async def prep_async(self, shared):
        return shared["texts"]

    async def exec_async(self, text):
        return await self.llm.chat(f"Summarize: {text}")

    async def post_async(self, shared, prep_res, exec_res_list):
        shared["summaries"] = exec_res_list


class ParallelSummarize(ParallelLLMNode, Summarize):
    """The same hooks, many calls at once."""


def timed(node: fk.BaseNode, shared: dict) -> float:
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=10)})
    started = time.perf_counter()
    runner.run(fk.AsyncFlow(start=node), shared)
    return time.perf_counter() - started


def main() -> None:
    shared = {"texts": [f"document {n}" for n in range(30)]}
    sequential = timed(Summarize(settings=SETTINGS), shared)
    first = shared["summaries"]
    parallel = timed(ParallelSummarize(settings=SETTINGS), shared)
    assert shared["summaries"] == first  # same answers, same order
    print(f"30 calls of 100 ms: sequential {sequential:.2f} s, parallel {parallel:.2f} s")
    print(f"speedup {sequential / parallel:.1f}x with at most 10 calls in flight")


if __name__ == "__main__":
    main()
