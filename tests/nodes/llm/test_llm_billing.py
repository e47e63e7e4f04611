"""What calls bill (``metered``), and replies kept in a journal and replayed (``journaled``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from nodes.llm import CallJournal, LLMClient, LLMError, LLMSettings, journaled, metered
from nodes.llm.testing import LLMServer, ServerConfig


class Verdict(BaseModel):
    score: int


def client_for(server: LLMServer, name: str = "judge", **overrides: Any) -> LLMClient:
    settings = LLMSettings(
        provider="openai", base_url=server.base_url, api_key="test", backoff_s=0, **overrides
    )
    return LLMClient(settings, name=name)


async def test_every_request_sent_is_billed_to_its_client() -> None:
    async with LLMServer(ServerConfig(fail_rate_429=0.3, retry_after_s=0, seed=4)) as server:
        judge, user = client_for(server, max_attempts=10), client_for(server, "user")
        with metered() as bills:
            await asyncio.gather(*(judge.chat(f"q{n}") for n in range(20)), user.chat("hi"))
        counts = server.stats.status_counts
    assert bills["judge"].attempts + bills["user"].attempts == sum(counts.values())
    assert bills["judge"].answered + bills["user"].answered == counts[200] == 21
    assert bills["judge"].retried == counts[429] > 0
    assert bills["judge"].prompt_tokens > 0 and bills["user"].answered == 1


async def test_a_call_that_fails_for_good_bills_its_tries_and_counts_as_failed() -> None:
    async with LLMServer(ServerConfig(fail_rate_500=1.0)) as server:
        with metered() as bills, pytest.raises(LLMError):
            await client_for(server, max_attempts=3).chat("q")
    assert (bills["judge"].attempts, bills["judge"].failed, bills["judge"].answered) == (3, 1, 0)


async def test_a_re_ask_is_billed_as_another_request() -> None:
    def responder(body: dict[str, Any]) -> str:
        return '{"score": ' if len(body["messages"]) == 1 else '{"score": 4}'

    async with LLMServer(responder=responder) as server:
        with metered() as bills:
            assert await client_for(server).parse("rate", Verdict) == Verdict(score=4)
    assert (bills["judge"].attempts, bills["judge"].answered, bills["judge"].reasks) == (2, 2, 1)


async def test_outside_a_metered_block_nothing_is_counted() -> None:
    async with LLMServer() as server:
        await client_for(server).chat("q")
        with metered() as bills:
            pass
    assert bills == {}


async def test_a_journal_replays_each_reply_once_in_order_and_skips_a_torn_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.jsonl"
    async with LLMServer() as server:
        client = client_for(server)
        with journaled(CallJournal(path)) as journal:
            first = [await client.chat("same"), await client.chat("same"), await client.chat("x")]
        journal.close()
        assert len(path.read_text().splitlines()) == 3 == server.stats.status_counts[200]
        with path.open("a") as f:
            f.write('{"key": "cut sh')  # a kill in the middle of a write
        replay = CallJournal(path)
        with metered() as bills, journaled(replay):
            again = [await client.chat("same"), await client.chat("same"), await client.chat("x")]
            more = await client.chat("same")  # a fourth: not stored, so asked
        replay.close()
        assert server.stats.status_counts[200] == 4
    assert again == first and more == first[0]
    assert (replay.replayed, bills["judge"].replayed, bills["judge"].attempts) == (3, 3, 1)
    assert json.loads(path.read_text().splitlines()[-1])["text"] == more
