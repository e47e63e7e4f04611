"""LangGraph: a ``Send`` per item from START to a worker node, results merged by a reducer.

Docs: https://docs.langchain.com/oss/python/langgraph/graph-api-send-command (map-reduce:
"Return one or more Send objects from a conditional edge ... use a reducer so updates
merge"), https://reference.langchain.com/python/langchain-core/runnables/config/RunnableConfig/max_concurrency
(the run's ``max_concurrency``) and
https://reference.langchain.com/python/langchain-core/rate_limiters/InMemoryRateLimiter
(LangChain's in-process request rate limiter; its default bucket of 1 means no burst).
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from contextlib import nullcontext
from typing import Annotated, Any, TypedDict

import openai
from langchain_core.rate_limiters import InMemoryRateLimiter
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from .work import Gauge, ask, noop, spin

NOTES = {
    "cpu": "no process executor: parallel sync nodes run on threads, which the GIL serialises",
}


def session(cores: int) -> nullcontext[None]:
    return nullcontext()


class State(TypedDict):
    n: int
    results: Annotated[list[Any], operator.add]


class Item(TypedDict):
    item: int


def fan_out(state: State) -> list[Send]:
    return [Send("work", {"item": i}) for i in range(state["n"])]


def build(work: Callable[[Item], Any]) -> Any:
    """A compiled graph: START fans out one ``work`` call per item, then END."""
    builder = StateGraph(State)
    builder.add_node("work", work)
    builder.add_conditional_edges(START, fan_out, ["work"])
    builder.add_edge("work", END)
    return builder.compile()


def noop_map(n: int, limit: int) -> int:
    def work(arg: Item) -> dict[str, list[int]]:
        return {"results": [noop(arg["item"])]}

    out = build(work).invoke({"n": n, "results": []}, {"max_concurrency": limit})
    return len(out["results"])


def sleep_map(n: int, limit: int, delay_s: float) -> int:
    gauge = Gauge()

    async def work(arg: Item) -> dict[str, list[int]]:
        with gauge:
            await asyncio.sleep(delay_s)
        return {"results": [arg["item"]]}

    asyncio.run(build(work).ainvoke({"n": n, "results": []}, {"max_concurrency": limit}))
    return gauge.peak


def cpu_map(n: int, loop: int, cores: int) -> list[int]:
    def work(arg: Item) -> dict[str, list[int]]:
        return {"results": [spin(loop)]}

    out = build(work).invoke({"n": n, "results": []}, {"max_concurrency": cores})
    return list(out["results"])


async def _llm_calls(base_url: str, calls: int, max_in_flight: int, rpm: int) -> list[bool]:
    limiter = InMemoryRateLimiter(requests_per_second=rpm / 60, check_every_n_seconds=0.01)
    async with openai.AsyncOpenAI(base_url=base_url, api_key="bench") as client:

        async def work(arg: Item) -> dict[str, list[bool]]:
            await limiter.aacquire()
            return {"results": [await ask(client, arg["item"])]}

        graph = build(work)
        out = await graph.ainvoke({"n": calls, "results": []}, {"max_concurrency": max_in_flight})
    return list(out["results"])


def llm_calls(base_url: str, calls: int, max_in_flight: int, rpm: int) -> int:
    return asyncio.run(_llm_calls(base_url, calls, max_in_flight, rpm)).count(False)
