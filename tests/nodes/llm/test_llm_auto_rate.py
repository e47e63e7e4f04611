"""``Limit(rpm="auto")`` against the local server, which states its limit in OpenAI's
x-ratelimit-* headers: the limiter learns it, holds every call for a 429's Retry-After and
follows a limit that halves, for LLM calls on the event loop (``nodes.llm``'s client) and for
a sync SDK on worker threads (reporting with ``nodes.llm.ratelimits.tell``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import openai
import pytest

import flowkit as fk
from flowkit.limits import LimiterStats
from nodes.llm import LLMRateLimitError, LLMSettings, ParallelLLMNode
from nodes.llm.ratelimits import retry_after, tell
from nodes.llm.testing import LLMServer, RequestRecord

STATED_RPM = 1200  # rpm=120 per 6 s window: more than these tests ever send in one window
PACED_RPM = STATED_RPM * 0.98
EXECUTORS = ["loop", "thread"]


class Ask(ParallelLLMNode):
    """LLM calls on the event loop: the client reports every answer to the limiter."""

    async def prep_async(self, shared: dict[str, Any]) -> list[str]:
        return shared["prompts"]

    async def exec_async(self, prompt: str) -> str:
        return await self.llm.chat(prompt, max_tokens=16)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, answers: list[Any]) -> None:
        shared["answers"] = answers


class AskOnThreads(fk.BatchNode):
    """A sync SDK on worker threads: the runner takes the limiter (``uses``), exec reports
    what the server said through a handle taken in prep."""

    executor = "thread"
    uses = ("llm",)
    max_concurrency = 8

    def __init__(self, base_url: str) -> None:
        super().__init__(max_retries=4, wait=0.01)
        self.base_url = base_url
        self.limiter: Any = None
        self.client: openai.OpenAI | None = None
        self.building = threading.Lock()

    def prep(self, shared: dict[str, Any]) -> list[str]:
        self.limiter = fk.current_limiter("llm")
        return shared["prompts"]

    def sdk(self) -> openai.OpenAI:
        """One client for every thread, built by the first (building one blocks)."""
        with self.building:
            if self.client is None:
                self.client = openai.OpenAI(base_url=self.base_url, api_key="t", max_retries=0)
        return self.client

    def exec(self, prompt: str) -> str:
        messages: Any = [{"role": "user", "content": prompt}]
        try:
            raw = self.sdk().chat.completions.with_raw_response.create(model="m", messages=messages)
        except openai.RateLimitError as exc:
            tell(self.limiter, 429, exc.response.headers)
            raise LLMRateLimitError("429", retry_after=retry_after(exc.response.headers)) from exc
        tell(self.limiter, raw.status_code, raw.headers)
        return raw.parse().choices[0].message.content or ""

    def post(self, shared: dict[str, Any], prep_res: Any, answers: list[Any]) -> None:
        shared["answers"] = answers
        if self.client is not None:
            self.client.close()


def run(executor: str, server: LLMServer, calls: int, limit: fk.Limit) -> LimiterStats:
    """``calls`` calls through the limiter ``llm`` set to ``limit``; what it learned."""
    node: fk.BaseNode
    if executor == "loop":
        settings = LLMSettings(
            provider="openai", base_url=server.base_url, api_key="test", backoff_s=0.01
        )
        node = Ask(settings=settings)
    else:
        node = AskOnThreads(server.base_url)
    runner = fk.Runner(limits={"llm": limit}, progress=False)
    shared: dict[str, Any] = {"prompts": [f"question {i}" for i in range(calls)]}
    runner.run(fk.AsyncFlow(start=node), shared)
    assert len(shared["answers"]) == calls and all(isinstance(a, str) for a in shared["answers"])
    assert runner.last_run is not None
    return runner.last_run.limiters["llm"]


def arrivals(server: LLMServer, after: float = 0.0) -> list[RequestRecord]:
    """Chat requests that reached the server after ``after``, in order."""
    records = server.wait_for(lambda s: s.in_flight == 0).requests
    chats = [r for r in records if r.path == "/v1/chat/completions" and r.start_monotonic > after]
    return sorted(chats, key=lambda r: r.start_monotonic)


def assert_paced(starts: list[float], rpm: float) -> None:
    """The k-th start came at least k intervals after the first (less half an interval for
    the network's jitter)."""
    interval = 60 / rpm
    for k, start in enumerate(starts):
        assert start - starts[0] >= k * interval - interval / 2, (k, start - starts[0])


def when_answered(server: LLMServer, count: int, **changes: Any) -> list[float]:
    """Once ``count`` calls are answered, configure the server with ``changes``; the list
    gets the moment it did."""
    done: list[float] = []

    def watch() -> None:
        server.wait_for(lambda s: s.status_counts.get(200, 0) >= count, timeout=30)
        server.configure(**changes)
        done.append(time.monotonic())

    threading.Thread(target=watch, daemon=True).start()
    return done


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.llm_server(rpm=120, rpm_window_s=6, latency_ms=20)
def test_auto_rpm_learns_the_rate_the_server_states(executor: str, llm_server: LLMServer) -> None:
    stats = run(executor, llm_server, 30, fk.Limit(rpm="auto"))
    assert stats.learns == ("rpm",)
    assert stats.rpm == STATED_RPM and stats.paced_rpm == pytest.approx(PACED_RPM)
    probe, *paced = arrivals(llm_server)
    assert probe.end_monotonic is not None
    assert paced[0].start_monotonic > probe.end_monotonic  # one call, until it is answered
    assert_paced([r.start_monotonic for r in paced], PACED_RPM)  # then the stated pace
    assert llm_server.stats.status_counts == {200: 30}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.llm_server(rpm=120, rpm_window_s=6, latency_ms=20, retry_after_s=0.5)
def test_a_429_holds_every_call_for_its_retry_after_and_slows_the_pace(
    executor: str, llm_server: LLMServer
) -> None:
    when_answered(llm_server, 10, next_faults=["429"])
    stats = run(executor, llm_server, 40, fk.Limit(rpm="auto"))
    records = arrivals(llm_server)
    [refused] = [r for r in records if r.status == 429]
    assert refused.end_monotonic is not None
    held = [
        r
        for r in records
        if refused.end_monotonic < r.start_monotonic < refused.end_monotonic + 0.5
    ]
    assert len(held) <= 1  # at most one already on its way when the 429 came back
    assert stats.refused == 1 and stats.paused_s >= 0.5
    assert stats.paced_rpm is not None and stats.paced_rpm < 0.95 * PACED_RPM
    assert min(rpm for _, rpm, _, _ in stats.moves if rpm) < 0.9 * PACED_RPM


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.llm_server(rpm=120, rpm_window_s=6, latency_ms=20)
def test_auto_rpm_follows_a_limit_that_halves_mid_run(executor: str, llm_server: LLMServer) -> None:
    halved = when_answered(llm_server, 10, rpm=60)
    stats = run(executor, llm_server, 30, fk.Limit(rpm="auto"))
    assert stats.rpm == STATED_RPM / 2 and stats.paced_rpm == pytest.approx(PACED_RPM / 2)
    assert [rpm for _, rpm, _, _ in stats.moves] == [None, PACED_RPM, PACED_RPM / 2]
    # Once an answer has said so (and one start set at the old pace has gone), the new pace.
    _, *later = [r.start_monotonic for r in arrivals(llm_server, after=halved[0] + 0.1)]
    assert len(later) >= 10
    assert_paced(later, PACED_RPM / 2)
    assert llm_server.stats.status_counts == {200: 30}


@pytest.mark.llm_server(tpm=6000, rpm_window_s=6, latency_ms=20)
def test_auto_tpm_learns_the_token_rate_the_server_states(llm_server: LLMServer) -> None:
    stats = run("loop", llm_server, 10, fk.Limit(tpm="auto"))
    assert stats.learns == ("tpm",)
    assert stats.tpm == 60_000 and stats.paced_tpm == pytest.approx(58_800)


@pytest.mark.llm_server(max_in_flight=3, latency_ms=100, retry_after_s=0.1)
def test_adaptive_concurrency_finds_a_limit_the_server_keeps_to_itself(
    llm_server: LLMServer,
) -> None:
    stats = run("loop", llm_server, 40, fk.Limit(max_concurrency="auto"))
    assert stats.learns == ("concurrency",)
    refused = llm_server.stats.status_counts.get(429, 0)
    assert stats.refused == refused and 1 <= refused <= 8
    low, high = stats.concurrency_range or (0, 0)
    assert low <= 3 < high  # it went past the limit, was refused, and backed off
