"""PocketFlow: ``AsyncParallelBatchNode``, which gathers every item's exec at once.

Docs: https://the-pocket.github.io/PocketFlow/core_abstraction/parallel.html — parallel
nodes overlap I/O only ("Because of Python's GIL, parallel nodes and flows can't truly
parallelize CPU-bound tasks"), and for rate limits "You may need a throttling mechanism
(e.g., semaphores or sleep intervals)", so limits here are an ``asyncio.Semaphore`` in exec.
"""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from typing import Any

import openai
import pocketflow as pf

from .work import Gauge, ask, noop, spin

NOTES = {
    "noop": "no concurrency limit in PocketFlow: every item is gathered at once",
    "cpu": "no process executor (the docs note the GIL): items run one at a time",
    "llm": "no rate limiter: a Semaphore(20) as the docs suggest, 429s retried by the OpenAI "
    "client (2 retries, Retry-After honoured)",
}


def session(cores: int) -> nullcontext[None]:
    return nullcontext()


class Noop(pf.AsyncParallelBatchNode):
    async def prep_async(self, shared: dict[str, Any]) -> range:
        return range(shared["n"])

    async def exec_async(self, item: int) -> int:
        return noop(item)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
        shared["results"] = exec_res


def noop_map(n: int, limit: int) -> int:
    shared: dict[str, Any] = {"n": n}
    asyncio.run(Noop().run_async(shared))
    return len(shared["results"])


class Sleep(Noop):
    def __init__(self, limit: int, delay_s: float) -> None:
        super().__init__()
        self.limit, self.delay_s = limit, delay_s
        self.gauge = Gauge()

    async def prep_async(self, shared: dict[str, Any]) -> range:
        self.throttle = asyncio.Semaphore(self.limit)
        return range(shared["n"])

    async def exec_async(self, item: int) -> int:
        async with self.throttle:
            with self.gauge:
                await asyncio.sleep(self.delay_s)
        return item


def sleep_map(n: int, limit: int, delay_s: float) -> int:
    node = Sleep(limit, delay_s)
    asyncio.run(node.run_async({"n": n}))
    return node.gauge.peak


class Spin(pf.BatchNode):
    def __init__(self, loop: int) -> None:
        super().__init__()
        self.loop = loop

    def prep(self, shared: dict[str, Any]) -> range:
        return range(shared["n"])

    def exec(self, item: int) -> int:
        return spin(self.loop)

    def post(self, shared: dict[str, Any], prep_res: Any, exec_res: list[int]) -> None:
        shared["results"] = exec_res


def cpu_map(n: int, loop: int, cores: int) -> list[int]:
    shared: dict[str, Any] = {"n": n}
    Spin(loop).run(shared)
    return list(shared["results"])


class Ask(pf.AsyncParallelBatchNode):
    def __init__(self, base_url: str, max_in_flight: int) -> None:
        super().__init__()
        self.base_url, self.max_in_flight = base_url, max_in_flight

    async def prep_async(self, shared: dict[str, Any]) -> range:
        self.client = openai.AsyncOpenAI(base_url=self.base_url, api_key="bench")
        self.throttle = asyncio.Semaphore(self.max_in_flight)
        return range(shared["calls"])

    async def exec_async(self, item: int) -> bool:
        async with self.throttle:
            return await ask(self.client, item)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
        shared["failed"] = exec_res.count(False)
        await self.client.close()


def llm_calls(base_url: str, calls: int, max_in_flight: int, rpm: int) -> int:
    shared: dict[str, Any] = {"calls": calls}
    asyncio.run(Ask(base_url, max_in_flight).run_async(shared))
    return int(shared["failed"])
