"""Retries, Retry-After, and failures that name the node, over real HTTP."""

from __future__ import annotations

import socket
from typing import Any

import pytest

import flowkit as fk
from nodes.llm import (
    LLMConnectionError,
    LLMRequestError,
    LLMServerError,
    LLMSettings,
    MalformedReplyError,
    ParallelLLMNode,
)
from nodes.llm.testing import LLMServer, ServerConfig
from nodes.llm.testing.completions import default_responder, last_user_text


def server_settings(base_url: str, **overrides: Any) -> LLMSettings:
    return LLMSettings(
        provider="openai",
        base_url=base_url,
        api_key="test",
        backoff_s=0.01,
        max_backoff_s=0.05,
        **overrides,
    )


class Ask(ParallelLLMNode):
    async def prep_async(self, shared: dict[str, Any]) -> list[str]:
        return shared["prompts"]

    async def exec_async(self, prompt: str) -> str:
        return await self.llm.chat(prompt)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, answers: list[Any]) -> None:
        shared["answers"] = answers


def run(node: fk.BaseNode, prompts: list[str]) -> tuple[fk.Runner, list[Any]]:
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=4)})
    shared: dict[str, Any] = {"prompts": prompts}
    runner.run(fk.AsyncFlow(start=node), shared)
    return runner, shared["answers"]


@pytest.mark.llm_server(next_faults=["429"], retry_after_s=0.3)
def test_429_waits_for_retry_after_then_succeeds(llm_server: LLMServer) -> None:
    runner, answers = run(Ask(settings=server_settings(llm_server.base_url)), ["hello"])
    assert answers[0].endswith("hello")
    first, second = llm_server.stats.requests
    assert (first.status, second.status) == (429, 200)
    assert second.start_monotonic - first.start_monotonic >= 0.3  # not the 0.01 s backoff
    assert runner.last_run is not None
    assert runner.last_run.nodes["Ask"].usage["llm_retries"] == 1


def test_a_failing_item_becomes_an_error_record_and_the_others_finish() -> None:
    def responder(body: dict[str, Any]) -> str:
        if last_user_text(body["messages"]) == "poison":
            raise RuntimeError("cannot answer this one")
        return default_responder(body)

    with LLMServer(responder=responder) as server:
        node = Ask(settings=server_settings(server.base_url, max_attempts=3), on_error="collect")
        runner, answers = run(node, ["one", "poison", "two"])
        poisoned = [
            r for r in server.stats.requests if r.body["messages"][0]["content"] == "poison"
        ]
    assert answers[0].endswith("one") and answers[2].endswith("two")
    record = answers[1]
    assert isinstance(record, fk.ErrorRecord)
    assert record.error_type == "LLMServerError"
    assert record.message.startswith("Ask: ")
    assert "gave up after 3 attempts" in record.message
    assert len(poisoned) == 3
    assert runner.last_run is not None and runner.last_run.errors == [record]


@pytest.mark.llm_server(next_faults=["malformed"])
def test_malformed_json_is_a_clear_error_naming_the_node(llm_server: LLMServer) -> None:
    node = Ask(settings=server_settings(llm_server.base_url), name="Summarise")
    with pytest.raises(
        MalformedReplyError, match=r"^Summarise: model gpt-4o-mini: .*not valid JSON"
    ):
        run(node, ["hello"])
    assert len(llm_server.stats.requests) == 1  # not retried


@pytest.mark.llm_server(next_faults=["stall"])
def test_a_stalled_call_times_out_and_is_retried(llm_server: LLMServer) -> None:
    _, answers = run(Ask(settings=server_settings(llm_server.base_url, timeout=0.3)), ["hi"])
    assert answers[0].endswith("hi")
    stalled, answered = llm_server.wait_for(lambda s: s.in_flight == 0).requests
    assert stalled.status is None and answered.status == 200


@pytest.mark.llm_server(fail_rate_500=1.0)
def test_a_server_that_keeps_failing_exhausts_the_retry_budget(llm_server: LLMServer) -> None:
    with pytest.raises(LLMServerError, match="gave up after 4 attempts"):
        run(Ask(settings=server_settings(llm_server.base_url, max_attempts=4)), ["hi"])
    assert llm_server.stats.status_counts == {500: 4}


def test_an_unreachable_server_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = server_settings(f"http://127.0.0.1:{port}/v1", max_attempts=2)
    with pytest.raises(LLMConnectionError, match=f"cannot reach http://127.0.0.1:{port}"):
        run(Ask(settings=settings), ["hi"])


def test_a_rejected_request_is_not_retried() -> None:
    with LLMServer(ServerConfig()) as server:
        settings = server_settings(server.base_url.removesuffix("/v1") + "/nope")
        with pytest.raises(LLMRequestError, match="HTTP 404"):
            run(Ask(settings=settings), ["hi"])
        assert len(server.stats.requests) == 1
