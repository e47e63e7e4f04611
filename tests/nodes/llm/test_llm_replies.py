"""Reading completions and Retry-After headers: usage, truncation, missing text."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from nodes.llm import MalformedReplyError
from nodes.llm.provider import ChatRequest, read_completion, retry_after

REQUEST = ChatRequest(model="m", messages=({"role": "user", "content": "x" * 40},), max_tokens=50)


def completion(content: str | None, finish_reason: str = "stop", **extra: Any) -> ChatCompletion:
    message = {"role": "assistant", "content": content, "refusal": extra.pop("refusal", None)}
    return ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            **extra,
        }
    )


def test_usage_comes_from_the_reply_or_is_estimated() -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    reply = read_completion(completion("hello", usage=usage), REQUEST)
    assert (reply.text, reply.prompt_tokens, reply.completion_tokens) == ("hello", 7, 3)
    estimated = read_completion(completion("12345678"), REQUEST)
    assert (estimated.prompt_tokens, estimated.completion_tokens) == (10, 2)
    assert REQUEST.estimated_tokens() == 10 + 50


def test_a_reply_cut_at_max_tokens_is_marked_truncated() -> None:
    assert read_completion(completion("half a sen", "length"), REQUEST).truncated
    assert not read_completion(completion("done."), REQUEST).truncated


def test_a_reply_without_text_is_malformed() -> None:
    with pytest.raises(MalformedReplyError, match="model m: the reply holds no message text"):
        read_completion(completion(None), REQUEST)
    with pytest.raises(MalformedReplyError, match="the model refused: not that"):
        read_completion(completion(None, refusal="not that"), REQUEST)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({}, None),
    ],
)
def test_retry_after_prefers_milliseconds(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(headers) == seconds
