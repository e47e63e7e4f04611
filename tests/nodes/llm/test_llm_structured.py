"""Structured output: replies validated into a pydantic model, re-asked a bounded number of
times with the validation error."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from nodes.llm import LLMClient, LLMSettings, StructuredOutputError
from nodes.llm.testing import LLMServer


class Verdict(BaseModel):
    label: str
    score: int


def client_for(server: LLMServer, **overrides: Any) -> LLMClient:
    settings = LLMSettings(provider="openai", base_url=server.base_url, api_key="test", **overrides)
    return LLMClient(settings, name="Judge")


async def test_an_invalid_reply_is_re_asked_with_the_error() -> None:
    def responder(body: dict[str, Any]) -> str:
        first_try = len(body["messages"]) == 1
        return '{"label": "good", "score": ' if first_try else '{"label": "good", "score": 4}'

    async with LLMServer(responder=responder) as server:
        verdict = await client_for(server).parse("rate this", Verdict)
        first, second = (r.body for r in server.stats.requests)
    assert verdict == Verdict(label="good", score=4)
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["schema"] == Verdict.model_json_schema()
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][1]["content"] == '{"label": "good", "score": '
    assert "Invalid JSON" in second["messages"][2]["content"]


async def test_re_asks_are_bounded_and_the_error_names_model_and_last_error() -> None:
    async with LLMServer(responder=lambda body: '{"label": "good", "score": "high"}') as server:
        with pytest.raises(StructuredOutputError) as caught:
            await client_for(server, model="judge-model", max_reasks=2).parse("rate", Verdict)
        assert len(server.stats.requests) == 3
    message = str(caught.value)
    assert message.startswith("Judge: model judge-model: ")
    assert "did not validate as Verdict" in message
    assert "score" in message and "valid integer" in message
    assert "gave up after 3 attempts" in message


async def test_a_schema_shaped_reply_validates_first_time(llm_server: LLMServer) -> None:
    verdict = await client_for(llm_server).parse("rate this", Verdict)
    assert verdict.label == "rate this"
    assert len(llm_server.stats.requests) == 1
