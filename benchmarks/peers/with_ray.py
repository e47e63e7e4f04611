"""Ray: one remote task per item on a local cluster, async actors for I/O-bound items.

Docs: https://docs.ray.io/en/latest/ray-core/tasks.html (``@ray.remote`` functions,
``ray.get`` on their refs) and https://docs.ray.io/en/latest/ray-core/actors/async_api.html
(an async actor's ``max_concurrency`` bounds the calls running in it at once: the way to
run many I/O-bound calls without a CPU each). ``ray.init(num_cpus=cores)`` as the brief
of this benchmark asks; the dashboard is left off and usage stats are not sent.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import ray

from .work import Gauge, ask, noop, spin

NOTES = {
    "noop": "plus a one-off ray.init and worker start (not timed)",
    "rss": "the driver's RSS only; Ray's workers and daemons are other processes",
    "llm": "no rate limiter in Ray: an async actor with max_concurrency=20, 429s retried by "
    "the OpenAI client (2 retries, Retry-After honoured)",
}


@ray.remote
def noop_task(item: int) -> int:
    return noop(item)


@ray.remote
def spin_task(loop: int) -> int:
    return spin(loop)


@contextmanager
def session(cores: int) -> Iterator[None]:
    """A local cluster of ``cores`` CPUs with its workers started."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Workers import this package by name to run its functions: put it on their path.
    benchmarks = str(Path(__file__).resolve().parents[1])
    ray.init(
        num_cpus=cores,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": benchmarks}},
    )
    try:
        ray.get([noop_task.remote(i) for i in range(cores)])
        yield
    finally:
        ray.shutdown()


def noop_map(n: int, limit: int) -> int:
    return len(ray.get([noop_task.remote(i) for i in range(n)]))


@ray.remote
class Sleeper:
    def __init__(self) -> None:
        self.gauge = Gauge()

    async def sleep(self, delay_s: float) -> None:
        with self.gauge:
            await asyncio.sleep(delay_s)

    def peak(self) -> int:
        return self.gauge.peak


def sleep_map(n: int, limit: int, delay_s: float) -> int:
    actor = Sleeper.options(max_concurrency=limit).remote()  # type: ignore[attr-defined]
    ray.get([actor.sleep.remote(delay_s) for _ in range(n)])
    return int(ray.get(actor.peak.remote()))


def cpu_map(n: int, loop: int, cores: int) -> list[int]:
    return list(ray.get([spin_task.remote(loop) for _ in range(n)]))


@ray.remote
class Caller:
    def __init__(self, base_url: str) -> None:
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key="bench")

    async def ask(self, item: int) -> bool:
        return await ask(self.client, item)


def llm_calls(base_url: str, calls: int, max_in_flight: int, rpm: int) -> int:
    actor = Caller.options(max_concurrency=max_in_flight).remote(base_url)  # type: ignore[attr-defined]
    answers = ray.get([actor.ask.remote(i) for i in range(calls)])
    ray.kill(actor)
    return answers.count(False)
