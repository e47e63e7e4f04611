"""The offline simulated provider: deterministic replies, seeded latency and faults.

The same request always gets the same text: the ``simulate`` callable a caller passes, or
else the local test server's responder (a digest plus an echo, or JSON shaped by the
requested schema). Latency and faults are drawn from the seed, the request and the try
number, so a run repeats exactly however its calls interleave. Faults raise the errors the
OpenAI provider raises and go through the same retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections import Counter

from nodes.llm.errors import LLMRateLimitError, LLMServerError, LLMTimeoutError
from nodes.llm.provider import ChatRequest, Reply, Simulate
from nodes.llm.settings import LLMSettings
from nodes.llm.testing.completions import default_responder, usage


class SimulatedProvider:
    """Answers without a network, per ``settings.simulation``."""

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self._tries: Counter[str] = Counter()

    async def complete(self, request: ChatRequest, simulate: Simulate | None) -> Reply:
        sim, model = self.settings.simulation, request.model
        body = request.body()
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        attempt = self._tries[key]
        self._tries[key] += 1
        rng = random.Random(f"{sim.seed}:{key}:{attempt}")
        point = rng.random()
        latency = (
            sim.latency_s
            if sim.latency_max_s is None
            else rng.uniform(sim.latency_s, sim.latency_max_s)
        )
        if point < sim.rate_limit_rate:
            raise LLMRateLimitError(
                f"model {model}: rate limited (simulated HTTP 429)", retry_after=sim.retry_after_s
            )
        point -= sim.rate_limit_rate
        if point < sim.timeout_rate:
            await asyncio.sleep(self.settings.timeout)
            raise LLMTimeoutError(
                f"model {model}: no reply within {self.settings.timeout:g} s (simulated)"
            )
        point -= sim.timeout_rate
        await asyncio.sleep(latency)
        if point < sim.server_error_rate:
            raise LLMServerError(f"model {model}: simulated server error (HTTP 500)")
        text = simulate() if simulate is not None else default_responder(body)
        counts = usage(body, text)
        return Reply(text, counts["prompt_tokens"], counts["completion_tokens"])

    async def aclose(self) -> None:
        """Nothing to release."""


_PREFIX = re.compile(r"[ \t]*(?:(?:>[ \t]?|(?:#{1,6}|[-*+]|\d{1,9}[.)]|\||\[[ xX]\])[ \t]+))*")
_LETTER = re.compile(r"[^\W\d_]")
_SENTENCE_GAP = re.compile(r"(?<=[.!?])(\s+)(?=\S)")


def fake_translation(text: str, language: str) -> str:
    """A recognisable stand-in for a translation: every sentence tagged ``[language]``.

    Markdown line structure (heading marks, list markers, quotes, table pipes) stays in
    front of the tags; lines without letters (rules, code placeholders) are left alone.
    """
    tag = f"[{language}] "

    def line(raw: str) -> str:
        prefix = _PREFIX.match(raw)
        cut = prefix.end() if prefix else 0
        rest = raw[cut:]
        if not _LETTER.search(rest):
            return raw
        return raw[:cut] + tag + _SENTENCE_GAP.sub(lambda m: m.group(1) + tag, rest)

    return "".join(line(raw) for raw in text.splitlines(keepends=True))
