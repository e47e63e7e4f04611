"""LLM layer benchmark: calls against the local OpenAI-compatible server, measured from its side.

Run by hand: ``python benchmarks/llm.py [--calls N] [--json PATH]``. Prints a table and writes
every figure to JSON (default benchmarks/results/llm.json).

(a) rate-bound, the headline: 500 calls, 50 ms latency, client limit 50 in flight and
    1 200 rpm, the server enforcing 1 200 rpm over a 60 s window. Achieved start rate vs the
    limit (target >= 95 %), the server's peak in flight (never above 50), 429s (target 0).
(b) concurrency-bound: the same calls with 500 ms latency and no rate limit, so the
    50-in-flight limit is what binds; the server's peak in flight must be exactly 50.
(c) strict window: as (a), but the server counts its 1 200 rpm over a 10 s window (200 per
    10 s), which network jitter can overrun by one; any 429 is retried.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from _results import write_results

import flowkit as fk
from nodes.llm import LLMSettings, ParallelLLMNode
from nodes.llm.testing import LLMServer, ServerConfig


class Ask(ParallelLLMNode):
    on_error = "collect"

    async def prep_async(self, shared: dict[str, Any]) -> list[str]:
        return [f"request {n}" for n in range(shared["calls"])]

    async def exec_async(self, prompt: str) -> str:
        return await self.llm.chat(prompt, max_tokens=16)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, answers: list[Any]) -> None:
        shared["failed"] = sum(isinstance(a, fk.ErrorRecord) for a in answers)


def scenario(calls: int, server: ServerConfig, limit: fk.Limit) -> dict[str, Any]:
    """Run ``calls`` LLM calls under ``limit`` against a server configured as ``server``."""
    with LLMServer(server.model_copy(update={"max_records": calls * 2})) as local:
        settings = LLMSettings(provider="openai", base_url=local.base_url, api_key="bench")
        runner = fk.Runner(limits={"llm": limit}, progress=False)
        shared: dict[str, Any] = {"calls": calls}
        started = time.perf_counter()
        runner.run(fk.AsyncFlow(start=Ask(settings=settings)), shared)
        wall = time.perf_counter() - started
        stats = local.wait_for(lambda s: s.in_flight == 0)
    starts = sorted(r.start_monotonic for r in stats.requests if r.status == 200)
    span = starts[-1] - starts[0]
    result: dict[str, Any] = {
        "calls": calls,
        "server": server.model_dump(include={"latency_ms", "rpm", "rpm_window_s"}),
        "limit": {"max_concurrency": limit.max_concurrency, "rpm": limit.rpm},
        "wall_s": wall,
        "answered": len(starts),
        "failed": shared["failed"],
        "status_counts": stats.status_counts,
        "server_peak_in_flight": stats.peak_in_flight,
        "start_rate_rpm": (len(starts) - 1) / span * 60 if span > 0 else None,
        "wall_rate_rpm": calls / wall * 60,
    }
    if limit.rpm:
        result["start_rate_vs_limit"] = result["start_rate_rpm"] / limit.rpm
        result["wall_rate_vs_limit"] = result["wall_rate_rpm"] / limit.rpm
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--json", default="benchmarks/results/llm.json")
    args = parser.parse_args()
    limit = fk.Limit(max_concurrency=50, rpm=1200)
    runs = {
        "a_rate_bound": scenario(args.calls, ServerConfig(latency_ms=50, rpm=1200), limit),
        "b_concurrency_bound": scenario(
            args.calls, ServerConfig(latency_ms=500), fk.Limit(max_concurrency=50)
        ),
        "c_strict_window": scenario(
            args.calls, ServerConfig(latency_ms=50, rpm=200, rpm_window_s=10), limit
        ),
    }
    print(
        f"{'scenario':<20} {'wall s':>7} {'starts/min':>10} {'vs limit':>8} "
        f"{'peak':>5} {'429s':>5} {'failed':>6}"
    )
    for name, r in runs.items():
        share = r.get("start_rate_vs_limit")
        print(
            f"{name:<20} {r['wall_s']:>7.2f} {r['start_rate_rpm']:>10.0f} "
            f"{f'{share:.1%}' if share else '-':>8} {r['server_peak_in_flight']:>5} "
            f"{r['status_counts'].get(429, 0):>5} {r['failed']:>6}"
        )
    results = {"python": sys.version.split()[0], **runs}
    write_results(args.json, results)


if __name__ == "__main__":
    main()
