"""``LLMClient``: chat completions with the run's limits, retries and usage built in.

Every try of a call takes the runner's named limiter (``settings.limiter``) when the run
defines one: a concurrency slot, a request under the rpm pacer and an estimate of its
tokens under the tpm pacer, corrected by the reply's real usage. How the try ended (the
rate limits the provider stated, a 429 and its Retry-After, a timeout) goes back to the
limiter, which learns from it when its limit is ``"auto"``. Failures worth retrying
(429, 5xx, timeouts, connection errors) are retried per ``settings.retry``, the slot
released while waiting. Tokens, latency and calls go to the running node's stats, and each
try is an ``operation`` with OpenTelemetry's GenAI attributes (model, tokens), which a traced
run shows as a child of its exec call. A reply's tokens and, when ``settings.prices`` prices
its model, its cost are charged to the limiter's budgets (``flowkit.Limit(max_tokens=...,
max_cost=...)``).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import re
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from flowkit.errors import FlowkitWarning
from flowkit.runner import current_limiter, operation, record_usage, waiting
from flowkit.runner.current import LimiterHandle
from nodes.llm.errors import (
    LLMCallError,
    LLMRateLimitError,
    LLMTimeoutError,
    StructuredOutputError,
    TruncatedReplyError,
)
from nodes.llm.journal import current_journal
from nodes.llm.meter import bill
from nodes.llm.provider import ChatRequest, OpenAIProvider, Provider, Reply, Simulate
from nodes.llm.settings import LLMSettings
from nodes.llm.simulated import SimulatedProvider

Message = Mapping[str, str]
"""A chat message: ``{"role": "user", "content": "..."}``."""
Prompt = str | Sequence[Message]
"""A user message's text, or the whole conversation."""
M = TypeVar("M", bound=BaseModel)


class LLMClient:
    """Calls the configured LLM; ``name`` (a node's name) prefixes every error it raises.

    Inside a run, each call adds ``prompt_tokens``, ``completion_tokens``, ``latency_s`` and
    ``calls`` to the node's ``usage`` stats, plus ``llm_retries`` and ``limiter_wait_s`` when
    it retried or waited; inside ``nodes.llm.metered()`` it also adds what it billed to the
    bill of ``name``; inside ``nodes.llm.journaled()`` it replays stored replies and records
    new ones. Cheap to create and safe to share: the HTTP client behind it is
    built lazily, once per event loop and settings, and closed when that loop shuts down.
    """

    def __init__(self, settings: LLMSettings | None = None, *, name: str = "llm") -> None:
        self.settings = settings if settings is not None else LLMSettings()
        self.settings.check()
        self.name = name
        self._retry = self.settings.retry

    async def chat(
        self,
        prompt: Prompt,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        simulate: Simulate | None = None,
    ) -> str:
        """The model's reply to ``prompt``.

        ``simulate`` supplies the reply text when the provider is the simulated one (e.g. a
        fake translation); real providers ignore it.
        """
        request = self._request(prompt, system, max_tokens, temperature, None)
        return (await self._complete(request, simulate)).text

    async def parse(
        self,
        prompt: Prompt,
        schema: type[M],
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        simulate: Simulate | None = None,
    ) -> M:
        """The reply validated into ``schema``; a reply that fails validation is re-asked
        with the error, up to ``settings.max_reasks`` times, then StructuredOutputError."""
        request = self._request(prompt, system, max_tokens, temperature, _json_format(schema))
        tries = self.settings.max_reasks + 1
        for _ in range(tries):
            reply = await self._complete(request, simulate)
            try:
                return schema.model_validate_json(reply.text)
            except ValidationError as exc:
                error = exc
            bill(self.name, reasks=1)
            request = request.followed_by(
                {"role": "assistant", "content": reply.text},
                {"role": "user", "content": _reask(schema, error)},
            )
        raise self._failed(
            StructuredOutputError(
                f"model {request.model}: the reply did not validate as {schema.__name__}; "
                f"last error: {error}"
            ),
            tries,
        )

    def _request(
        self,
        prompt: Prompt,
        system: str | None,
        max_tokens: int | None,
        temperature: float | None,
        response_format: Mapping[str, object] | None,
    ) -> ChatRequest:
        messages: list[Message] = [{"role": "system", "content": system}] if system else []
        if isinstance(prompt, str):
            messages.append({"role": "user", "content": prompt})
        else:
            messages.extend(prompt)
        settings = self.settings
        return ChatRequest(
            model=settings.model,
            messages=tuple(messages),
            max_tokens=max_tokens if max_tokens is not None else settings.max_tokens,
            temperature=temperature if temperature is not None else settings.temperature,
            response_format=response_format,
        )

    async def _complete(self, request: ChatRequest, simulate: Simulate | None) -> Reply:
        """One call: limiter, provider, retries, usage (or its reply from the journal)."""
        journal = current_journal()
        if journal is not None:
            stored = journal.replay(request)
            if stored is not None:
                bill(self.name, replayed=1)
                return stored
        # The client first (the first calls wait, counted as waiting, while one builds it),
        # then the limiter, then the request at once: nothing awaits between the limiter's
        # pacing and the send, so the server sees the rate the limiter kept.
        provider = await _provider(self.settings)
        limiter = current_limiter(self.settings.limiter)
        estimate = request.estimated_tokens()
        attempt = 1
        while True:
            if limiter is not None:
                waited = await limiter.acquire(tokens=estimate)
                if waited > 0:
                    record_usage(limiter_wait_s=waited)
            started = time.monotonic()
            failure: LLMCallError | None = None
            answer: Reply | None = None
            bill(self.name, attempts=1)
            try:
                with operation(f"chat {request.model}", **self._trace(request, attempt)) as op:
                    reply = answer = await provider.complete(request, simulate)
                    op["gen_ai.usage.input_tokens"] = reply.prompt_tokens
                    op["gen_ai.usage.output_tokens"] = reply.completion_tokens
                    if reply.truncated:
                        op["gen_ai.response.finish_reasons"] = "length"
            except LLMCallError as exc:
                failure = exc
            finally:
                if limiter is not None:
                    _tell(limiter, answer, failure)  # a limit that learns takes it in
                    limiter.release()
            latency = time.monotonic() - started
            if failure is None:
                break
            if limiter is not None:
                limiter.adjust_tokens(-estimate)  # a failed try spent no tokens
            delay = self._retry.next_wait(attempt, failure)
            if delay is None:
                bill(self.name, failed=1)
                raise self._failed(failure, attempt)
            record_usage(llm_retries=1)
            with waiting("retry backoff"):
                await asyncio.sleep(delay)
            attempt += 1
        used = reply.prompt_tokens + reply.completion_tokens
        cost = self.settings.cost(request.model, reply.prompt_tokens, reply.completion_tokens)
        if limiter is not None:
            limiter.adjust_tokens(used - estimate)
            limiter.charge(tokens=used, cost=cost or 0.0)
            if cost is None and limiter.costed:
                _unpriced(request.model, limiter.name)
        bill(
            self.name,
            answered=1,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
        )
        if journal is not None:
            journal.record(request, reply)
        record_usage(
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            latency_s=latency,
            calls=1,
            **({} if cost is None else {"cost": cost}),
        )
        if reply.truncated:
            raise self._failed(
                TruncatedReplyError(
                    f"model {request.model}: the reply stopped at max_tokens="
                    f"{request.max_tokens}; raise max_tokens or send less text"
                ),
                attempt,
            )
        return reply

    def _trace(self, request: ChatRequest, attempt: int) -> dict[str, str | int | float]:
        """What a trace shows of one try (OpenTelemetry's GenAI conventions): never the
        prompt, the key or the endpoint."""
        system = self.settings.provider
        out: dict[str, str | int | float] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": system,
            "gen_ai.provider.name": system,
            "gen_ai.request.model": request.model,
            "gen_ai.request.max_tokens": request.max_tokens,
            "openinference.span.kind": "LLM",
            "flowkit.llm.client": self.name,
            "flowkit.attempt": attempt,
        }
        if request.temperature is not None:
            out["gen_ai.request.temperature"] = request.temperature
        return out

    def _failed(self, error: LLMCallError, attempts: int) -> LLMCallError:
        error.owner, error.attempts = self.name, attempts
        return error


_warned_unpriced: set[str] = set()


def _unpriced(model: str, limiter: str) -> None:
    """Say once per model that its calls count as free against a cost budget."""
    if model not in _warned_unpriced:
        _warned_unpriced.add(model)
        warnings.warn(
            f"flowkit: model {model!r} has no price, so its calls count as free against the "
            f"cost budget of limiter {limiter!r}; give LLMSettings(prices={{{model!r}: "
            "(IN, OUT)}) or FLOWKIT_LLM_PRICES (dollars per million prompt, completion tokens)",
            FlowkitWarning,
            stacklevel=3,
        )


def _tell(limiter: LimiterHandle, reply: Reply | None, failure: LLMCallError | None) -> None:
    """Tell the limiter how a try ended: answered (with the limits the provider stated),
    refused for its rate limits (with its Retry-After), or timed out."""
    if reply is not None:
        used = reply.prompt_tokens + reply.completion_tokens
        limiter.answered(reply.requests_quota, reply.tokens_quota, used=used)
    elif isinstance(failure, LLMRateLimitError):
        requests, tokens = failure.quotas
        limiter.refused(failure.retry_after, requests=requests, tokens=tokens)
    elif isinstance(failure, LLMTimeoutError):
        limiter.timed_out()


def _json_format(schema: type[BaseModel]) -> dict[str, object]:
    """A ``response_format`` asking for JSON that follows ``schema``."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__)[:64]
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": copy.deepcopy(_json_schema(schema))},
    }


@functools.lru_cache(maxsize=256)
def _json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, built once per model class (it takes about a millisecond)."""
    return schema.model_json_schema()


def _reask(schema: type[BaseModel], error: ValidationError) -> str:
    return (
        f"Your reply is not valid {schema.__name__} JSON:\n{error}\n"
        "Reply again with only the JSON object, following the schema exactly."
    )


class _LoopProviders:
    """The providers of one event loop.

    A started async generator holds them: asyncio closes such generators before it closes
    the loop (``asyncio.run``, ``asyncio.Runner``), which closes the providers' connections
    on the loop that opened them.
    """

    def __init__(self) -> None:
        self.providers: dict[LLMSettings, Provider] = {}
        self.creating = asyncio.Lock()
        self._keeper = self._keep()

    async def start(self) -> None:
        await anext(self._keeper)

    async def _keep(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for provider in self.providers.values():
                await provider.aclose()


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopProviders] = (
    weakref.WeakKeyDictionary()
)


async def _provider(settings: LLMSettings) -> Provider:
    """The running loop's provider for ``settings``, created on first use."""
    loop = asyncio.get_running_loop()
    pool = _loops.get(loop)
    provider = pool.providers.get(settings) if pool is not None else None
    if provider is not None:
        return provider
    with waiting("LLM client set-up"):  # the first calls wait while one builds the client
        if pool is None:
            pool = _loops[loop] = _LoopProviders()
            await pool.start()
        async with pool.creating:
            provider = pool.providers.get(settings)
            if provider is None:
                provider = pool.providers[settings] = (
                    SimulatedProvider(settings)
                    if settings.provider == "simulated"
                    else await asyncio.to_thread(OpenAIProvider, settings)
                )
    return provider
