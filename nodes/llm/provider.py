"""Providers answer one chat request with one try; the client adds limits, retries, usage.

``OpenAIProvider`` talks to any OpenAI-compatible server through the official SDK (its own
retries off) and turns the SDK's failures into this package's errors, so the client and the
simulated provider share one retry path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from flowkit.limits import Quota
from nodes.llm.errors import (
    LLMConnectionError,
    LLMRateLimitError,
    LLMRequestError,
    LLMServerError,
    LLMTimeoutError,
    MalformedReplyError,
)
from nodes.llm.messages import estimate_tokens
from nodes.llm.ratelimits import quotas, retry_after
from nodes.llm.settings import LLMSettings

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion

Simulate = Callable[[], str]
"""Reply text for the simulated provider to use instead of its generic one."""


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request, as sent to the provider."""

    model: str
    messages: tuple[Mapping[str, str], ...]
    max_tokens: int
    temperature: float | None = None
    response_format: Mapping[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        """The request as an OpenAI chat completions body."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in self.messages],
            "max_tokens": self.max_tokens,
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.response_format is not None:
            body["response_format"] = dict(self.response_format)
        return body

    def prompt_tokens(self) -> int:
        """A rough count of the prompt's tokens (about four characters each)."""
        return estimate_tokens(" ".join(m.get("content", "") for m in self.messages))

    def estimated_tokens(self) -> int:
        """What the call may cost against a tokens-per-minute budget: prompt plus reply cap."""
        return self.prompt_tokens() + self.max_tokens

    def followed_by(self, *messages: Mapping[str, str]) -> ChatRequest:
        """The same request with ``messages`` appended to the conversation."""
        return replace(self, messages=(*self.messages, *messages))


@dataclass(frozen=True)
class Reply:
    """The text of one completion and the tokens it used; ``requests_quota`` and
    ``tokens_quota``: the rate limits the provider stated on it, if any."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool = False
    requests_quota: Quota | None = None
    tokens_quota: Quota | None = None


class Provider(Protocol):
    """Sends one request (one try) and returns its reply or raises an ``LLMCallError``."""

    async def complete(self, request: ChatRequest, simulate: Simulate | None) -> Reply: ...

    async def aclose(self) -> None: ...


class OpenAIProvider:
    """Any OpenAI-compatible server, through ``openai.AsyncOpenAI`` with ``max_retries=0``.

    Building one takes tens of milliseconds (TLS context, SDK resources): do it off the loop.
    The SDK itself is imported here, so runs that only simulate never pay its import time.
    """

    def __init__(self, settings: LLMSettings) -> None:
        import openai

        settings.check()
        assert settings.api_key is not None
        self.settings = settings
        self._openai = openai
        self._client = openai.AsyncOpenAI(
            api_key=settings.api_key.get_secret_value(),
            base_url=settings.base_url,
            timeout=settings.timeout,
            max_retries=0,
        )
        self._completions = self._client.chat.completions

    async def complete(self, request: ChatRequest, simulate: Simulate | None) -> Reply:
        model, openai = request.model, self._openai
        try:
            raw = await self._completions.with_raw_response.create(**request.body())
            completion = raw.parse()
        except openai.RateLimitError as exc:
            headers = exc.response.headers
            raise LLMRateLimitError(
                f"model {model}: rate limited (HTTP 429): {exc.message}",
                retry_after=retry_after(headers),
                quotas=quotas(headers),
            ) from exc
        except openai.APIStatusError as exc:
            detail = f"model {model}: HTTP {exc.status_code}: {exc.message}"
            if exc.status_code >= 500:
                raise LLMServerError(detail, retry_after=retry_after(exc.response.headers)) from exc
            raise LLMRequestError(detail) from exc
        except openai.APITimeoutError as exc:
            raise LLMTimeoutError(
                f"model {model}: no reply within {self.settings.timeout:g} s"
            ) from exc
        except openai.APIConnectionError as exc:
            raise LLMConnectionError(
                f"model {model}: cannot reach {self._client.base_url}: {exc}"
            ) from exc
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            raise MalformedReplyError(
                f"model {model}: the reply is not valid JSON ({exc})"
            ) from exc
        requests, tokens = quotas(raw.headers)
        reply = read_completion(completion, request)
        return replace(reply, requests_quota=requests, tokens_quota=tokens)

    async def aclose(self) -> None:
        await self._client.close()


def read_completion(completion: ChatCompletion, request: ChatRequest) -> Reply:
    """The reply text and usage of a completion (estimated when the server sends none);
    MalformedReplyError when it has no text."""
    choice = completion.choices[0] if completion.choices else None
    text = choice.message.content if choice is not None else None
    if choice is None or text is None:
        refusal = choice.message.refusal if choice is not None else None
        why = f"the model refused: {refusal}" if refusal else "the reply holds no message text"
        raise MalformedReplyError(f"model {request.model}: {why}")
    usage = completion.usage
    return Reply(
        text=text,
        prompt_tokens=usage.prompt_tokens if usage else request.prompt_tokens(),
        completion_tokens=usage.completion_tokens if usage else estimate_tokens(text),
        truncated=choice.finish_reason == "length",
    )
