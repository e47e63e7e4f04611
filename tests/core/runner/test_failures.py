"""Retries, fallback, failure isolation and cancellation."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.errors import TooManyErrorsError


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Flaky(fk.AsyncParallelBatchNode):
    """Item i fails its first ``fails[i]`` tries."""

    def __init__(self, fails: dict[int, int], **options) -> None:
        super().__init__(**options)
        self.fails = fails
        self.tries: dict[int, list[int]] = {}

    async def prep_async(self, shared):
        return list(range(shared.get("n", 5)))

    async def exec_async(self, item):
        self.tries.setdefault(item, []).append(self.cur_retry)
        await asyncio.sleep(0)
        if len(self.tries[item]) <= self.fails.get(item, 0):
            raise ConnectionError(f"item {item} try {self.cur_retry}")
        return item * 10

    async def post_async(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


async def test_max_retries_retry_each_item_on_its_own() -> None:
    node = Flaky({1: 2, 3: 1}, max_retries=3)
    shared: dict = {}
    runner = fk.Runner()
    await runner.run_async(node, shared)
    assert shared["out"] == [0, 10, 20, 30, 40]
    assert node.tries == {0: [0], 1: [0, 1, 2], 2: [0], 3: [0, 1], 4: [0]}
    assert runner.last_run is not None
    assert runner.last_run.nodes["Flaky"].retries == 3


async def test_exponential_backoff_with_retry_after_hint() -> None:
    class Limited(Exception):
        retry_after = 7.0

    class Hinted(fk.AsyncNode):
        retry = fk.Retry(attempts=4, initial=1, max_wait=3, jitter=0)
        tries = 0

        async def exec_async(self, prep_res):
            Hinted.tries += 1
            if Hinted.tries == 1:
                raise Limited()
            if Hinted.tries < 4:
                raise ConnectionError()
            return "ok"

    sleep = RecordingSleep()
    assert await fk.Runner(sleep=sleep).run_async(Hinted(), {}) is None
    assert sleep.delays == [7.0, 2.0, 3.0]


async def test_only_listed_exceptions_are_retried() -> None:
    node = Flaky({0: 1}, retry=fk.Retry(attempts=3, retry_on=(TimeoutError,), initial=0))
    with pytest.raises(ConnectionError):
        await fk.Runner().run_async(node, {"n": 1})
    assert node.tries == {0: [0]}


async def test_fallback_gets_the_last_exception() -> None:
    class WithFallback(Flaky):
        async def exec_fallback_async(self, prep_res, exc):
            return f"fallback {prep_res}: {exc}"

    shared: dict = {}
    await fk.Runner().run_async(WithFallback({2: 5}, max_retries=2), shared)
    assert shared["out"][2] == "fallback 2: item 2 try 1"


async def test_raise_names_node_and_item_and_cancels_siblings() -> None:
    cancelled = 0
    started = 0

    class OneBad(fk.AsyncParallelBatchNode):
        max_concurrency = 4

        async def prep_async(self, shared):
            return range(100)

        async def exec_async(self, item):
            nonlocal cancelled, started
            started += 1
            if item == 2:
                raise KeyError("missing")
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled += 1
                raise

    t0 = time.monotonic()
    with pytest.raises(KeyError) as info:
        await fk.Runner().run_async(OneBad(), {})
    assert time.monotonic() - t0 < 1
    assert "OneBad failed on item 2 after 1 attempt(s)" in info.value.__notes__[0]
    assert started == 4
    assert cancelled == 3


async def test_collect_keeps_going_and_records_errors() -> None:
    node = Flaky({1: 9, 3: 9}, on_error="collect", max_retries=2)
    shared: dict = {}
    runner = fk.Runner()
    await runner.run_async(node, shared)
    out = shared["out"]
    assert [out[i] for i in (0, 2, 4)] == [0, 20, 40]
    assert all(isinstance(out[i], fk.ErrorRecord) for i in (1, 3))
    assert out[1].index == 1
    assert out[1].error_type == "ConnectionError"
    assert out[1].attempts == 2
    assert "item 1 try 1" in out[1].traceback
    assert runner.last_run is not None
    assert [e.index for e in runner.last_run.errors] == [1, 3]


def test_a_recorded_traceback_holds_only_the_items_own_error() -> None:
    """From synchronous code too: nothing flowkit caught on its way in is chained to it."""
    shared: dict = {}
    fk.Runner().run(Flaky({1: 9}, on_error="collect", max_retries=1), shared)
    trace = shared["out"][1].traceback
    assert "ConnectionError" in trace
    assert "During handling" not in trace and "no running event loop" not in trace


async def test_max_errors_stops_the_batch() -> None:
    node = Flaky(dict.fromkeys(range(50), 9), on_error="collect", max_errors=3, max_concurrency=1)
    with pytest.raises(TooManyErrorsError, match="4 items failed, more than max_errors=3"):
        await fk.Runner().run_async(node, {"n": 50})
    assert len(node.tries) == 4


async def test_cancelling_a_run_stops_in_flight_work_at_once() -> None:
    started = asyncio.Event()
    cancelled = 0

    class Forever(fk.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return range(20)

        async def exec_async(self, item):
            nonlocal cancelled
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled += 1
                raise

    task = asyncio.create_task(fk.Runner().run_async(Forever(), {}))
    await started.wait()
    t0 = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - t0 < 1
    assert cancelled == 20


class Sleeper(fk.BatchNode):
    executor = "process"

    def prep(self, shared):
        return [shared["dir"]] * 2

    def exec(self, folder):
        Path(folder, str(os.getpid())).touch()
        time.sleep(60)


async def wait_for_files(folder: Path, n: int) -> list[int]:
    for _ in range(500):
        pids = [int(p.name) for p in folder.iterdir()]
        if len(pids) >= n:
            return pids
        await asyncio.sleep(0.02)
    raise AssertionError(f"workers did not start: {list(folder.iterdir())}")


async def test_cancelling_a_run_kills_busy_worker_processes(
    tmp_path: Path, alive: Callable[[int], bool]
) -> None:
    task = asyncio.create_task(
        fk.Runner(process_workers=2).run_async(Sleeper(), {"dir": str(tmp_path)})
    )
    pids = await wait_for_files(tmp_path, 2)
    t0 = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - t0 < 1
    assert not any(alive(pid) for pid in pids)


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_failures import Sleeper
    import flowkit as fk

    if __name__ == "__main__":
        fk.Runner(process_workers=2).run(Sleeper(), {{"dir": {folder!r}}})
    """
)


async def test_ctrl_c_leaves_no_child_processes(
    tmp_path: Path, alive: Callable[[int], bool]
) -> None:
    folder = tmp_path / "pids"
    folder.mkdir()
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), folder=str(folder)))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
    pids = await wait_for_files(folder, 2)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - t0 < 2
    assert proc.returncode != 0
    assert b"KeyboardInterrupt" in err
    assert not any(alive(pid) for pid in pids)
