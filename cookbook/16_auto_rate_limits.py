"""Chapter 16: limits that find the provider's rate.

You rarely know your provider's rate limit, and it changes: another job shares the key, your
tier moves, the provider sheds load. OpenAI-style APIs say what they allow on every answer
(``x-ratelimit-limit-requests: 2400``, ``x-ratelimit-remaining-requests``,
``x-ratelimit-reset-requests``) and how long to wait on a refusal (``Retry-After`` on a 429).
A limit set to ``"auto"`` listens:

    Runner(limits={"llm": Limit(rpm="auto")})

- The first call goes alone; once an answer states the limit, calls are paced at it, less a
  2 % margin (a provider counting over a sliding window never sees one call too many).
- A 429 holds every call for its Retry-After and slows the pace (it recovers over seconds).
- A limit that changes is followed from the next answer on.
- ``max_concurrency="auto"`` adapts calls in flight (AIMD: one more per full round of answers,
  half as many on a 429 or a timeout), up to 64; ``Limit(max_concurrency=20, adaptive=True)``
  sets the ceiling.

``nodes.llm``'s client reports each answer to the run's limiter by itself. Code that calls a
provider another way, e.g. a sync SDK on worker threads, takes the limiter in prep and
reports with ``nodes.llm.ratelimits.tell(limiter, status, headers)``.

The provider here is the local fault-injecting server (``nodes.llm.testing``), which keeps
its limit to itself but states it in its headers, as OpenAI does; no network is used.

Run: python cookbook/16_auto_rate_limits.py
"""

from __future__ import annotations

import threading

import flowkit as fk
from nodes.llm import LLMSettings, ParallelLLMNode
from nodes.llm.testing import LLMServer, ServerConfig

CALLS = 120


class Classify(ParallelLLMNode):
    on_error = "collect"

    async def prep_async(self, shared):
        return shared["tickets"]

    async def exec_async(self, ticket):
        return await self.llm.chat(f"Classify this support ticket: {ticket}", max_tokens=10)

    async def post_async(self, shared, prep_res, exec_res_list):
        shared["labels"] = exec_res_list


def run(server: LLMServer, limit: fk.Limit) -> fk.LimiterStats:
    """Classify the tickets against ``server`` under ``limit``; what the limiter saw."""
    settings = LLMSettings(provider="openai", base_url=server.base_url, api_key="local")
    runner = fk.Runner(limits={"llm": limit}, progress=False)
    shared = {"tickets": [f"ticket {n}: the app crashes on start" for n in range(CALLS)]}
    runner.run(fk.AsyncFlow(start=Classify(settings=settings)), shared)
    assert runner.last_run is not None and runner.last_run.ok
    return runner.last_run.limiters["llm"]


def answered_rate(server: LLMServer) -> float:
    """Answered calls per minute, between the first and the last, as the server saw them."""
    starts = sorted(r.start_monotonic for r in server.stats.requests if r.status == 200)
    return (len(starts) - 1) / (starts[-1] - starts[0]) * 60


def main() -> None:
    # 200 requests per sliding 5 s window (2 400 a minute), stated only in its headers.
    hidden = ServerConfig(rpm=200, rpm_window_s=5, latency_ms=40, latency_max_ms=80)

    print("1. rpm='auto' against a limit you were not told")
    with LLMServer(hidden) as server:
        stats = run(server, fk.Limit(rpm="auto"))
        refused = server.stats.status_counts.get(429, 0)
        print(f"   learned: {stats.limits_text()}")
        print(f"   {answered_rate(server):,.0f} calls/min answered of 2,400; {refused} refused")

    print("2. the provider halves its limit mid-run")
    with LLMServer(hidden) as server:

        def halve() -> None:
            server.wait_for(lambda s: s.status_counts.get(200, 0) >= CALLS // 2, timeout=60)
            server.configure(rpm=100)

        threading.Thread(target=halve, daemon=True).start()
        stats = run(server, fk.Limit(rpm="auto"))
        refused = server.stats.status_counts.get(429, 0)
        paces = " -> ".join(f"{rpm:,.0f}" for _, rpm, _, _ in stats.moves if rpm)
        print(f"   pace (calls/min): {paces}; {refused} refused")

    print("3. max_concurrency='auto' against a server that refuses beyond 4 in flight")
    with LLMServer(ServerConfig(max_in_flight=4, latency_ms=100, retry_after_s=0.1)) as server:
        stats = run(server, fk.Limit(max_concurrency="auto"))
        low, high = stats.concurrency_range or (0, 0)
        print(
            f"   calls in flight moved between {low} and {high}, {stats.concurrency} at the end; "
            f"{stats.refused} refused of {CALLS + stats.refused} tries"
        )
    print(f"   the run's summary line: {stats.line()}")


if __name__ == "__main__":
    main()
