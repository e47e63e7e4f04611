"""What every peer runs: the item functions, an in-flight gauge and the LLM request."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Protocol

import openai

WORKLOADS = ("noop", "sleep", "cpu", "rss", "llm")
MODEL = "flowkit-fake"
MAX_TOKENS = 16


def noop(item: int) -> int:
    return item


def spin(loop: int) -> int:
    """Pure-Python work: ``loop`` iterations of integer arithmetic (~20 ms once calibrated)."""
    total = 0
    for i in range(loop):
        total += i * i % 7
    return total


class Gauge:
    """Counts the calls inside it and keeps the peak; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.now -= 1


def messages(item: int) -> list[openai.types.chat.ChatCompletionUserMessageParam]:
    return [{"role": "user", "content": f"request {item}"}]


async def ask(client: openai.AsyncOpenAI, item: int) -> bool:
    """One chat call; False when it still failed after the client's own retries."""
    try:
        await client.chat.completions.create(
            model=MODEL, messages=messages(item), max_tokens=MAX_TOKENS
        )
    except openai.APIError:
        return False
    return True


def ask_sync(client: openai.OpenAI, item: int) -> bool:
    """``ask`` for the blocking client."""
    try:
        client.chat.completions.create(model=MODEL, messages=messages(item), max_tokens=MAX_TOKENS)
    except openai.APIError:
        return False
    return True


class Peer(Protocol):
    """What a peer module offers (modules satisfy it structurally)."""

    NOTES: dict[str, str]
    """Per workload, what the peer does where it cannot do what was asked: a table footnote."""

    def session(self, cores: int) -> AbstractContextManager[None]:
        """Start (and warm) what the peer needs for a cell, stop it after."""
        ...

    def noop_map(self, n: int, limit: int) -> int:
        """Map ``noop`` over ``range(n)``, at most ``limit`` at once where the peer bounds it;
        the number of results."""
        ...

    def sleep_map(self, n: int, limit: int, delay_s: float) -> int:
        """``n`` items that each await ``delay_s``, at most ``limit`` at once; the peak in
        flight, counted inside the items."""
        ...

    def cpu_map(self, n: int, loop: int, cores: int) -> list[int]:
        """``spin(loop)`` for ``n`` items, spread over ``cores`` cores where the peer can."""
        ...

    def llm_calls(self, base_url: str, calls: int, max_in_flight: int, rpm: int) -> int:
        """``calls`` chat calls to ``base_url`` within the limits; how many failed."""
        ...
