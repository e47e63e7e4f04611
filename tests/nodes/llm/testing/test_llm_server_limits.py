"""Concurrency and rate limits observed and enforced from the server's side."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI, RateLimitError

from nodes.llm.testing import LLMServer

MESSAGES: Any = [{"role": "user", "content": "hello"}]


async def fire(server: LLMServer, count: int) -> list[Any]:
    async with AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as client:
        calls = (
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"request {i}"}]
            )
            for i in range(count)
        )
        return await asyncio.gather(*calls, return_exceptions=True)


@pytest.mark.llm_server(latency_ms=300)
async def test_peak_in_flight_equals_concurrent_requests(llm_server: LLMServer) -> None:
    results = await fire(llm_server, 10)
    assert all(not isinstance(r, BaseException) for r in results)
    stats = llm_server.stats
    assert stats.peak_in_flight == 10
    assert stats.in_flight == 0
    starts = [r.start_monotonic for r in stats.requests]
    ends = [r.end_monotonic or 0 for r in stats.requests]
    assert max(starts) < min(ends)  # every request overlapped every other one
    assert all((r.duration_s or 0) >= 0.3 for r in stats.requests)


def test_sequential_requests_peak_at_one(llm_server: LLMServer) -> None:
    client = OpenAI(base_url=llm_server.base_url, api_key="test", max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert llm_server.stats.peak_in_flight == 1


@pytest.mark.llm_server(latency_ms=300, max_in_flight=3, retry_after_s=0.5)
async def test_max_in_flight_rejects_the_excess(llm_server: LLMServer) -> None:
    results = await fire(llm_server, 5)
    rejected = [r for r in results if isinstance(r, RateLimitError)]
    assert len(rejected) == 2
    assert rejected[0].response.headers["retry-after-ms"] == "500"
    stats = llm_server.stats
    assert stats.status_counts == {200: 3, 429: 2}
    assert sorted(r.reason or "" for r in stats.requests) == ["", "", "", *["max_in_flight"] * 2]


@pytest.mark.llm_server(rpm=3)
def test_rpm_window_rejects_with_retry_after(llm_server: LLMServer) -> None:
    client = OpenAI(base_url=llm_server.base_url, api_key="test", max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(RateLimitError) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES)
    headers = caught.value.response.headers
    assert 59 <= int(headers["retry-after"]) <= 60
    assert 0 < int(headers["retry-after-ms"]) <= 60_000
    assert llm_server.stats.requests[-1].reason == "rpm"


@pytest.mark.llm_server(rpm=2, rpm_window_s=0.4)
def test_sdk_retries_after_the_window_slides(llm_server: LLMServer) -> None:
    client = OpenAI(base_url=llm_server.base_url, api_key="test", max_retries=3)
    for _ in range(3):
        client.chat.completions.create(model="m", messages=MESSAGES)
    stats = llm_server.stats
    assert stats.status_counts[200] == 3 and stats.status_counts[429] >= 1
    admitted = [r.start_monotonic for r in stats.requests if r.status == 200]
    assert admitted[2] - admitted[0] >= 0.4


def rate_headers(headers: Any, unit: str = "requests") -> tuple[str, str, str]:
    return (
        headers[f"x-ratelimit-limit-{unit}"],
        headers[f"x-ratelimit-remaining-{unit}"],
        headers[f"x-ratelimit-reset-{unit}"],
    )


@pytest.mark.llm_server(rpm=30, rpm_window_s=6, tpm=6000)
def test_answers_state_the_limits_in_openai_headers(llm_server: LLMServer) -> None:
    client = OpenAI(base_url=llm_server.base_url, api_key="test", max_retries=0)
    first = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    second = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    # 30 per 6 s stands for 300 a minute; two taken; the window empties 6 s after the last.
    assert rate_headers(first.headers)[:2] == ("300", "29")
    limit, remaining, reset = rate_headers(second.headers)
    assert (limit, remaining) == ("300", "28")
    assert reset.endswith("s") and 5.5 <= float(reset.removesuffix("s")) <= 6
    used = second.parse().usage
    assert used is not None
    limit, remaining, _ = rate_headers(second.headers, "tokens")
    assert (limit, remaining) == ("60000", str(6000 - 2 * used.total_tokens))


@pytest.mark.llm_server(rpm=30, rate_headers=False)
def test_rate_headers_can_be_kept_back(llm_server: LLMServer) -> None:
    client = OpenAI(base_url=llm_server.base_url, api_key="test", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert not [h for h in raw.headers if h.startswith("x-ratelimit")]


@pytest.mark.llm_server(rpm=4, rpm_window_s=2)
def test_a_halved_limit_refuses_until_enough_of_the_window_has_left(
    llm_server: LLMServer,
) -> None:
    client = OpenAI(base_url=llm_server.base_url, api_key="test", max_retries=0)
    for _ in range(4):
        client.chat.completions.create(model="m", messages=MESSAGES)
    llm_server.configure(rpm=2)
    with pytest.raises(RateLimitError) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES)
    admitted = [r.start_monotonic for r in llm_server.stats.requests if r.status == 200]
    refused = llm_server.stats.requests[-1]
    # Room for one more once three of the four have left: when the third one does.
    expected = admitted[2] + 2 - refused.start_monotonic
    wait = int(caught.value.response.headers["retry-after-ms"]) / 1000
    assert expected - 0.01 <= wait <= expected + 0.002  # in whole milliseconds
    assert rate_headers(caught.value.response.headers) == (
        "60",
        "0",
        rate_headers(caught.value.response.headers)[2],
    )


@pytest.mark.llm_server(tpm=10_000, rpm_window_s=60)
def test_tpm_refuses_what_the_window_cannot_take(llm_server: LLMServer) -> None:
    client = OpenAI(base_url=llm_server.base_url, api_key="test", max_retries=0)
    used = client.chat.completions.create(model="m", messages=MESSAGES).usage
    assert used is not None
    llm_server.configure(tpm=used.total_tokens * 3 // 2)  # not room for the same again
    with pytest.raises(RateLimitError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert llm_server.stats.requests[-1].reason == "tpm"
