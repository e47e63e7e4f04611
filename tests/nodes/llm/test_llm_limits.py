"""LLM calls under the runner's named limiter, seen from the local server's side."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import flowkit as fk
from nodes.llm import LLMNode, LLMSettings, ParallelLLMNode
from nodes.llm.testing import LLMServer
from nodes.llm.testing.completions import default_responder, usage


def server_settings(server: LLMServer, **overrides: Any) -> LLMSettings:
    return LLMSettings(
        provider="openai", base_url=server.base_url, api_key="test", backoff_s=0.01, **overrides
    )


class AskInTurn(LLMNode, fk.AsyncBatchNode):
    """One call at a time."""

    async def prep_async(self, shared: dict[str, Any]) -> list[str]:
        return shared["prompts"]

    async def exec_async(self, prompt: str) -> str:
        return await self.llm.chat(prompt)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, answers: list[Any]) -> None:
        shared["answers"] = answers


class Ask(ParallelLLMNode, AskInTurn):
    """The same hooks, many calls at once."""


def run(node: fk.BaseNode, prompts: list[str], **limit: Any) -> tuple[fk.Runner, list[Any]]:
    runner = fk.Runner(limits={"llm": fk.Limit(**limit)})
    shared: dict[str, Any] = {"prompts": prompts}
    runner.run(fk.AsyncFlow(start=node), shared)
    return runner, shared["answers"]


@pytest.mark.llm_server(latency_ms=100)
def test_calls_in_flight_reach_but_never_exceed_max_concurrency(llm_server: LLMServer) -> None:
    _, answers = run(
        Ask(settings=server_settings(llm_server)),
        [f"question {i}" for i in range(20)],
        max_concurrency=4,
    )
    assert len(answers) == 20
    assert llm_server.stats.peak_in_flight == 4


def test_rpm_spaces_call_starts(llm_server: LLMServer) -> None:
    interval = 60 / 300
    run(Ask(settings=server_settings(llm_server)), [f"q{i}" for i in range(8)], rpm=300)
    starts = sorted(r.start_monotonic for r in llm_server.stats.requests)
    assert len(starts) == 8
    # The k-th start reaches the server at least k intervals after the first, less however
    # late the first one arrived (allowed up to half an interval on a busy machine).
    for k, start in enumerate(starts):
        assert start - starts[0] >= k * interval - interval / 2


def test_every_node_shares_one_limiter(llm_server: LLMServer) -> None:
    llm_server.configure(latency_ms=100)
    settings = server_settings(llm_server)
    branches = fk.Parallel(Ask(settings=settings, name="a"), Ask(settings=settings, name="b"))
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=3)})
    shared: dict[str, Any] = {"prompts": [f"q{i}" for i in range(6)]}
    runner.run(fk.AsyncFlow(start=branches), shared)
    assert len(llm_server.stats.requests) == 12
    assert llm_server.stats.peak_in_flight == 3


def test_usage_records_tokens_latency_and_calls(llm_server: LLMServer) -> None:
    llm_server.configure(latency_ms=50)
    runner, _ = run(
        Ask(settings=server_settings(llm_server)), [f"q{i}" for i in range(5)], max_concurrency=5
    )
    assert runner.last_run is not None
    recorded = runner.last_run.nodes["Ask"].usage
    served = [usage(r.body, default_responder(r.body)) for r in llm_server.stats.requests]
    assert recorded["calls"] == 5
    assert recorded["prompt_tokens"] == sum(u["prompt_tokens"] for u in served)
    assert recorded["completion_tokens"] == sum(u["completion_tokens"] for u in served)
    assert recorded["latency_s"] >= 5 * 0.05


class FakeTime:
    """A clock that only moves when the limiter sleeps; records each sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def test_tpm_budget_is_charged_the_replies_real_usage(llm_server: LLMServer) -> None:
    time = FakeTime()
    runner = fk.Runner(
        limits={"llm": fk.Limit(tpm=60_000)}, clock=time.clock, sleep=time.sleep
    )  # one token per millisecond
    shared: dict[str, Any] = {"prompts": ["same length 1", "same length 2", "same length 3"]}
    node = AskInTurn(settings=server_settings(llm_server, max_tokens=500))
    runner.run(fk.AsyncFlow(start=node), shared)
    assert runner.last_run is not None
    used = runner.last_run.nodes["AskInTurn"].usage
    per_call = (used["prompt_tokens"] + used["completion_tokens"]) / 3
    assert per_call < 100  # far below the 500-token estimate each call reserved
    # Each call waits for the previous call's real tokens, not for its estimate.
    assert time.sleeps == pytest.approx([per_call / 1000] * 2)


@pytest.mark.llm_server(latency_ms=50)
def test_calls_waiting_for_the_client_or_the_limiter_are_not_counted_as_running(
    llm_server: LLMServer, tmp_path: Any
) -> None:
    from flowkit.report import load_report

    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=2)}, report=tmp_path)
    shared: dict[str, Any] = {"prompts": [f"question {i}" for i in range(8)]}
    runner.run(fk.AsyncFlow(start=Ask(settings=server_settings(llm_server))), shared)
    assert llm_server.stats.peak_in_flight == 2
    report = load_report(tmp_path)
    [node] = [n for n in report.nodes if n.name == "Ask"]
    assert node.peak_in_flight == 2 and report.limiters[0].peak_in_flight == 2
    whats = {b.what for b in report.bars if b.kind == "wait"}
    assert whats == {"LLM client set-up", "limiter llm"}
