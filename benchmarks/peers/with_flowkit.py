"""flowkit: parallel batch nodes under a Runner; limits are node and named-limiter settings.

Written as README.md's "Example" and "Behaviour worth knowing" describe: an
``AsyncParallelBatchNode`` with ``max_concurrency`` for async items, ``executor = "process"``
for pure-Python CPU work, and ``nodes.llm.ParallelLLMNode`` drawing on a named
``Limit(max_concurrency=, rpm=)`` for LLM calls.
"""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from typing import Any

import flowkit as fk
from nodes.llm import LLMSettings, ParallelLLMNode

from .work import Gauge, noop, spin

NOTES: dict[str, str] = {}


def session(cores: int) -> nullcontext[None]:
    return nullcontext()


class Noop(fk.AsyncParallelBatchNode):
    async def prep_async(self, shared: dict[str, Any]) -> range:
        return range(shared["n"])

    async def exec_async(self, item: int) -> int:
        return noop(item)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
        shared["done"] = len(exec_res)


def noop_map(n: int, limit: int) -> int:
    shared: dict[str, Any] = {"n": n}
    fk.Runner(progress=False).run(Noop(max_concurrency=limit), shared)
    return int(shared["done"])


class Sleep(Noop):
    def __init__(self, delay_s: float, **options: Any) -> None:
        super().__init__(**options)
        self.delay_s = delay_s
        self.gauge = Gauge()

    async def exec_async(self, item: int) -> int:
        with self.gauge:
            await asyncio.sleep(self.delay_s)
        return item


def sleep_map(n: int, limit: int, delay_s: float) -> int:
    node = Sleep(delay_s, max_concurrency=limit)
    fk.Runner(progress=False).run(node, {"n": n})
    return node.gauge.peak


class Spin(fk.BatchNode):
    executor = "process"

    def __init__(self, loop: int, **options: Any) -> None:
        super().__init__(**options)
        self.loop = loop

    def prep(self, shared: dict[str, Any]) -> range:
        return range(shared["n"])

    def exec(self, item: int) -> int:
        return spin(self.loop)

    def post(self, shared: dict[str, Any], prep_res: Any, exec_res: list[int]) -> None:
        shared["results"] = exec_res


def cpu_map(n: int, loop: int, cores: int) -> list[int]:
    shared: dict[str, Any] = {"n": n}
    fk.Runner(progress=False, process_workers=cores).run(Spin(loop), shared)
    return list(shared["results"])


class Ask(ParallelLLMNode):
    on_error = "collect"

    async def prep_async(self, shared: dict[str, Any]) -> range:
        return range(shared["calls"])

    async def exec_async(self, item: int) -> str:
        return await self.llm.chat(f"request {item}", max_tokens=16)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, answers: list[Any]) -> None:
        shared["failed"] = sum(isinstance(a, fk.ErrorRecord) for a in answers)


def llm_calls(base_url: str, calls: int, max_in_flight: int, rpm: int) -> int:
    settings = LLMSettings(
        provider="openai", base_url=base_url, api_key="bench", model="flowkit-fake", limiter="api"
    )
    runner = fk.Runner(
        limits={"api": fk.Limit(max_concurrency=max_in_flight, rpm=rpm)}, progress=False
    )
    shared: dict[str, Any] = {"calls": calls}
    runner.run(fk.AsyncFlow(start=Ask(settings=settings)), shared)
    return int(shared["failed"])
