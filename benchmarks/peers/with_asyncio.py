"""Plain asyncio: ``gather`` over every item, an ``asyncio.Semaphore`` as the limit.

Docs: https://docs.python.org/3/library/asyncio-sync.html#asyncio.Semaphore (bounding work
in flight) and https://docs.python.org/3/library/asyncio-eventloop.html#executing-code-in-thread-or-process-pools
(``run_in_executor`` with a ``ProcessPoolExecutor`` for CPU-bound code).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext

import openai

from .work import Gauge, ask, noop, spin

NOTES = {
    "llm": "no rate limiter in the standard library: a Semaphore(20), 429s retried by the "
    "OpenAI client (2 retries, Retry-After honoured)",
}


def session(cores: int) -> nullcontext[None]:
    return nullcontext()


async def _noop_map(n: int, limit: int) -> list[int]:
    sem = asyncio.Semaphore(limit)

    async def one(item: int) -> int:
        async with sem:
            return noop(item)

    return await asyncio.gather(*(one(i) for i in range(n)))


def noop_map(n: int, limit: int) -> int:
    return len(asyncio.run(_noop_map(n, limit)))


async def _sleep_map(n: int, limit: int, delay_s: float, gauge: Gauge) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(item: int) -> None:
        async with sem:
            with gauge:
                await asyncio.sleep(delay_s)

    await asyncio.gather(*(one(i) for i in range(n)))


def sleep_map(n: int, limit: int, delay_s: float) -> int:
    gauge = Gauge()
    asyncio.run(_sleep_map(n, limit, delay_s, gauge))
    return gauge.peak


async def _cpu_map(n: int, loop: int, cores: int) -> list[int]:
    running = asyncio.get_running_loop()
    with ProcessPoolExecutor(cores) as pool:
        return await asyncio.gather(*(running.run_in_executor(pool, spin, loop) for _ in range(n)))


def cpu_map(n: int, loop: int, cores: int) -> list[int]:
    return asyncio.run(_cpu_map(n, loop, cores))


async def _llm_calls(base_url: str, calls: int, max_in_flight: int) -> list[bool]:
    sem = asyncio.Semaphore(max_in_flight)
    async with openai.AsyncOpenAI(base_url=base_url, api_key="bench") as client:

        async def one(item: int) -> bool:
            async with sem:
                return await ask(client, item)

        return await asyncio.gather(*(one(i) for i in range(calls)))


def llm_calls(base_url: str, calls: int, max_in_flight: int, rpm: int) -> int:
    return asyncio.run(_llm_calls(base_url, calls, max_in_flight)).count(False)
