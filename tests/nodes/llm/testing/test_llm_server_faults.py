"""Injected faults as the openai SDK sees them: 429, 500, malformed JSON, stalls."""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any

import pytest
from openai import APITimeoutError, InternalServerError, OpenAI, RateLimitError

from nodes.llm.testing import Fault, LLMServer, ServerConfig

MESSAGES: Any = [{"role": "user", "content": "hello"}]


def client_for(server: LLMServer, **options: Any) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="test", max_retries=0, **options)


def ask(client: OpenAI, **options: Any) -> str | None:
    reply = client.chat.completions.create(model="m", messages=MESSAGES, **options)
    return reply.choices[0].message.content


@pytest.mark.llm_server(next_faults=["429"], retry_after_s=3)
def test_next_fault_429_carries_retry_after(llm_server: LLMServer) -> None:
    client = client_for(llm_server)
    with pytest.raises(RateLimitError) as caught:
        ask(client)
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.response.headers["retry-after-ms"] == "3000"
    assert ask(client)  # the queue held one fault only
    assert [r.reason for r in llm_server.stats.requests] == ["429", None]
    assert llm_server.stats.status_counts == {429: 1, 200: 1}


def test_fault_header_forces_one_request(llm_server: LLMServer) -> None:
    client = client_for(llm_server)
    with pytest.raises(InternalServerError):
        ask(client, extra_headers={"X-Flowkit-Fault": "500"})
    with pytest.raises(RateLimitError):
        ask(client, extra_headers={"X-Flowkit-Fault": "429"})
    assert ask(client)


def test_next_faults_are_used_in_order(llm_server: LLMServer) -> None:
    llm_server.configure(next_faults=[Fault.SERVER_ERROR, Fault.RATE_LIMIT])
    assert llm_server.config.next_faults == (Fault.SERVER_ERROR, Fault.RATE_LIMIT)
    client = client_for(llm_server)
    with pytest.raises(InternalServerError):
        ask(client)
    assert llm_server.config.next_faults == (Fault.RATE_LIMIT,)
    with pytest.raises(RateLimitError):
        ask(client)
    assert ask(client)


def test_malformed_body_surfaces_as_a_json_decode_error(llm_server: LLMServer) -> None:
    # The SDK does not wrap this: response.json() raises json.JSONDecodeError itself.
    llm_server.configure(next_faults=["malformed"])
    with pytest.raises(json.JSONDecodeError):
        ask(client_for(llm_server))
    assert llm_server.stats.status_counts == {200: 1}


@pytest.mark.llm_server(next_faults=["stall"])
def test_stall_holds_until_the_client_gives_up(llm_server: LLMServer) -> None:
    with pytest.raises(APITimeoutError):
        ask(client_for(llm_server, timeout=0.3))
    stats = llm_server.wait_for(lambda s: s.in_flight == 0)
    (record,) = stats.requests
    assert record.status is None and record.reason == "stall"  # no answer was ever sent
    assert stats.disconnects == 1


@pytest.mark.llm_server(next_faults=["stall"], stall_s=0.3)
def test_bounded_stall_then_answers(llm_server: LLMServer) -> None:
    assert ask(client_for(llm_server, timeout=10))
    (record,) = llm_server.stats.requests
    assert record.status == 200 and record.reason == "stall"
    assert record.duration_s is not None and record.duration_s >= 0.3


def outcomes(server: LLMServer, count: int) -> list[int | None]:
    client = client_for(server)
    for _ in range(count):
        with contextlib.suppress(RateLimitError, InternalServerError):
            ask(client)
    return [r.status for r in server.stats.requests]


def test_fault_rates_repeat_for_a_seed() -> None:
    config = ServerConfig(seed=7, fail_rate_429=0.3, fail_rate_500=0.3)
    with LLMServer(config) as first, LLMServer(config) as second:
        sequence = outcomes(first, 20)
        assert sequence == outcomes(second, 20)
        assert {200, 429, 500} <= set(sequence)
        first.reset()
        assert outcomes(first, 20) == sequence


def test_latency_range_is_seeded() -> None:
    config = ServerConfig(latency_ms=10, latency_max_ms=30, seed=3)
    draws = [config.draw_latency_s(random.Random(1)) for _ in range(2)]
    assert draws[0] == draws[1] and 0.01 <= draws[0] <= 0.03
    with LLMServer(config) as server:
        client = client_for(server)
        for _ in range(3):
            ask(client)
        durations = [r.duration_s or 0 for r in server.stats.requests]
    assert all(d >= 0.01 for d in durations)
