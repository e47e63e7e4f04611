"""Prefect 3: ``@task``s mapped inside a ``@flow`` by its task runners, limits on the server.

Docs: https://docs.prefect.io/v3/concepts/task-runners (``.map()`` on the default
``ThreadPoolTaskRunner``, whose ``max_workers`` bounds tasks in flight, and the
``ProcessPoolTaskRunner`` "for CPU-intensive tasks") and
https://docs.prefect.io/v3/how-to-guides/workflows/global-concurrency-limits (``rate_limit``
on a global concurrency limit with ``slot_decay_per_second``: Prefect's rate limit).

Prefect keeps run state in an API server. Here it is the documented ephemeral one, started
on localhost in a subprocess on first use, with its database in a fresh temporary
``PREFECT_HOME``; telemetry is off, so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import openai

_HOME = tempfile.mkdtemp(prefix="peers-prefect-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
for _name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILES_PATH"):
    os.environ.pop(_name, None)
os.environ.update(  # read by Prefect when it is imported
    PREFECT_HOME=_HOME,
    PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="true",
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
    PREFECT_LOGGING_LEVEL="WARNING",
    DO_NOT_TRACK="1",
)

from prefect import flow, task, unmapped  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate  # noqa: E402
from prefect.concurrency.sync import rate_limit  # noqa: E402
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner  # noqa: E402

from .work import Gauge, ask_sync, noop, spin  # noqa: E402

NOTES = {
    "noop": "plus a one-off start of the ephemeral API server (not timed), a subprocess that "
    "shares the cores while tasks run",
    "llm": "rate_limit() on a global concurrency limit of 1 slot decaying 10/s, bounded by "
    "ThreadPoolTaskRunner(max_workers=20); a refused acquire sleeps for the server's Retry-After",
}

_gauge = Gauge()
_client: openai.OpenAI | None = None


@contextmanager
def session(cores: int) -> Iterator[None]:
    """Start the ephemeral API server with one tiny flow, so cells time the work alone."""
    noop_flow(1)
    yield


@task
def noop_task(item: int) -> int:
    return noop(item)


@flow
def noop_flow(n: int) -> int:
    return len(noop_task.map(range(n)).result())


def noop_map(n: int, limit: int) -> int:
    return noop_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=limit))(n)


@task
async def sleep_task(item: int, delay_s: float) -> int:
    with _gauge:
        await asyncio.sleep(delay_s)
    return item


@flow
def sleep_flow(n: int, delay_s: float) -> None:
    sleep_task.map(range(n), delay_s=unmapped(delay_s)).result()


def sleep_map(n: int, limit: int, delay_s: float) -> int:
    global _gauge
    _gauge = Gauge()
    sleep_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=limit))(n, delay_s)
    return _gauge.peak


@task
def spin_task(item: int, loop: int) -> int:
    return spin(loop)


@flow
def spin_flow(n: int, loop: int) -> list[int]:
    return spin_task.map(range(n), loop=unmapped(loop)).result()


def cpu_map(n: int, loop: int, cores: int) -> list[int]:
    runner = ProcessPoolTaskRunner(max_workers=cores)
    return spin_flow.with_options(task_runner=runner)(n, loop)


@task
def ask_task(item: int, limit_name: str) -> bool:
    assert _client is not None
    rate_limit(limit_name)
    return ask_sync(_client, item)


@flow
def ask_flow(calls: int, limit_name: str) -> list[bool]:
    return ask_task.map(range(calls), limit_name=unmapped(limit_name)).result()


def llm_calls(base_url: str, calls: int, max_in_flight: int, rpm: int) -> int:
    global _client
    name = f"llm-rpm-{os.getpid()}"
    with get_client(sync_client=True) as api:  # limit=1: one start per decay, no burst
        api.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=1, slot_decay_per_second=rpm / 60)
        )
    with openai.OpenAI(base_url=base_url, api_key="bench") as _client:
        runner = ThreadPoolTaskRunner(max_workers=max_in_flight)
        return ask_flow.with_options(task_runner=runner)(calls, name).count(False)
