"""Chapter 4: rate-limited parallel calls.

The hand-written ``asyncio.Semaphore(5)`` of the old tutorial bounded calls in flight for
one node only, and did nothing about requests per minute. A named limit does both, for
every node and every copy that draws on it:

    Runner(limits={"llm": Limit(max_concurrency=5, rpm=300)})

Calls start evenly spaced (300 a minute is one every 0.2 s, never a burst), at most 5 are
in flight, and a 429 is retried after the server's Retry-After. The simulated provider
here answers 10% of tries with a 429, so the retries show up in the stats.

Run: python cookbook/04_rate_limited.py
"""

from __future__ import annotations

import flowkit as fk
from flowkit.runner import current_limiter
from nodes.llm import LLMSettings, ParallelLLMNode, Simulation

SETTINGS = LLMSettings(
    provider="simulated",
    backoff_s=0.1,
    simulation=Simulation(latency_s=0.3, rate_limit_rate=0.1, retry_after_s=0.3, seed=4),
)


class Classify(ParallelLLMNode):
    async def prep_async(self, shared):
        return shared["tickets"]

    async def exec_async(self, ticket):
        return await self.llm.chat(f"Classify this support ticket: {ticket}", max_tokens=10)

    async def post_async(self, shared, prep_res, exec_res_list):
        shared["labels"] = exec_res_list
        limiter = current_limiter("llm")  # the run's limiter, to show what it allowed
        shared["peak"] = limiter.slots.peak if limiter and limiter.slots else None


def main() -> None:
    shared = {"tickets": [f"ticket {n}: the app crashes on start" for n in range(20)]}
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=5, rpm=300)})
    runner.run(fk.AsyncFlow(start=Classify(settings=SETTINGS)), shared)

    assert runner.last_run is not None
    usage = runner.last_run.nodes["Classify"].usage
    calls, retries = usage["calls"], usage.get("llm_retries", 0)
    took = runner.last_run.wall_time
    print(f"{calls:.0f} calls answered, {retries:.0f} retried after a simulated 429")
    print(f"at most {shared['peak']} calls in flight (limit 5)")
    print(
        f"{calls + retries:.0f} requests started in {took:.2f} s; one every 0.2 s allows "
        f"at most {int(took / 0.2) + 1} in that time"
    )


if __name__ == "__main__":
    main()
