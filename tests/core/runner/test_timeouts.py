"""Per-node timeouts: a try past its time fails with ItemTimeoutError, on every executor, and
is retried under the node's policy; the other items go on."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flowkit.events import Event, TimedOut


class HangOnThree(fk.AsyncParallelBatchNode):
    """Item 3 waits for an event nobody sets (on its first try only, with ``once``)."""

    timeout = 0.2
    on_error = "collect"
    once = False

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.cancelled: list[int] = []

    async def prep_async(self, shared: dict[str, Any]) -> list[int]:
        return list(range(6))

    async def exec_async(self, item: int) -> int:
        if item == 3 and not (self.once and self.cur_retry > 0):
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(item)
                raise
        return item * 10

    async def post_async(self, shared: dict[str, Any], prep_res: Any, results: list[Any]) -> None:
        shared["results"] = results


def test_an_async_exec_past_its_timeout_is_cancelled_and_its_neighbours_finish() -> None:
    node = HangOnThree()
    events: list[Event] = []
    runner = fk.Runner(on_event=events.append)
    shared: dict[str, Any] = {}
    runner.run(node, shared)
    results = shared["results"]
    assert [r for i, r in enumerate(results) if i != 3] == [0, 10, 20, 40, 50]
    record = results[3]
    assert isinstance(record, fk.ErrorRecord) and record.error_type == "ItemTimeoutError"
    assert "HangOnThree: exec on item 3 ran past its timeout of 0.2 s" in record.message
    assert "was cancelled" in record.message
    assert node.cancelled == [3]
    stats = runner.last_run.nodes["HangOnThree"]  # type: ignore[union-attr]
    assert (stats.timeouts, stats.failed, stats.timeout) == (1, 1, 0.2)
    [timed] = [e for e in events if isinstance(e, TimedOut)]
    assert (timed.node, timed.index, timed.seconds) == ("HangOnThree", 3, 0.2)
    assert timed.how == "cancelled"


def test_a_timeout_raises_naming_node_item_and_seconds_under_on_error_raise() -> None:
    with pytest.raises(fk.ItemTimeoutError) as caught:
        fk.Runner().run(HangOnThree(on_error="raise"), {})
    err = caught.value
    assert isinstance(err, TimeoutError) and isinstance(err, fk.FlowkitError)
    assert (err.node, err.index, err.seconds) == ("HangOnThree", 3, 0.2)
    assert "Runner(timeouts={'HangOnThree': SECONDS})" in str(err)


def test_a_timed_out_try_is_retried_under_the_nodes_policy() -> None:
    node = HangOnThree(retry=fk.Retry(attempts=2, initial=0, jitter=0))
    node.once = True
    shared: dict[str, Any] = {}
    runner = fk.Runner()
    runner.run(node, shared)
    assert shared["results"] == [0, 10, 20, 30, 40, 50]
    stats = runner.last_run.nodes["HangOnThree"]  # type: ignore[union-attr]
    assert (stats.timeouts, stats.retries, stats.failed) == (1, 1, 0)


def test_the_runner_sets_timeouts_by_node_name() -> None:
    class Hang(HangOnThree):
        timeout = None

    shared: dict[str, Any] = {}
    fk.Runner(timeouts={"Hang": 0.1}).run(Hang(), shared)
    assert shared["results"][3].error_type == "ItemTimeoutError"
    assert "timeout of 0.1 s" in shared["results"][3].message


class BlockInThread(fk.BatchNode):
    """Item 1 blocks its thread until the test lets it go."""

    executor = "thread"
    timeout = 0.2
    on_error = "collect"

    def __init__(self, release: threading.Event, **options: Any) -> None:
        super().__init__(**options)
        self.release = release

    def prep(self, shared: dict[str, Any]) -> list[int]:
        return list(range(5))

    def exec(self, item: int) -> int:
        if item == 1:
            self.release.wait(30)
        return item

    def post(self, shared: dict[str, Any], prep_res: Any, results: list[Any]) -> None:
        shared["results"] = results


def test_a_thread_past_its_timeout_is_abandoned_and_the_pool_keeps_its_size() -> None:
    release = threading.Event()
    shared: dict[str, Any] = {}
    runner = fk.Runner(thread_workers=1)  # one thread: the stuck one must be replaced
    try:
        with pytest.warns(fk.FlowkitWarning, match="past its timeout were abandoned"):
            runner.run(BlockInThread(release), shared)
    finally:
        release.set()
    results = shared["results"]
    assert [results[i] for i in (0, 2, 3, 4)] == [0, 2, 3, 4]
    assert results[1].error_type == "ItemTimeoutError"
    assert "abandoned in its thread" in results[1].message


class HangInWorker(fk.BatchNode):
    """Item 2 hangs its worker process on its first try; every result says its pid."""

    executor = "process"
    timeout = 1.0
    max_retries = 2

    def prep(self, shared: dict[str, Any]) -> list[int]:
        return list(range(4))

    def exec(self, item: int) -> tuple[int, int, int]:
        if item == 2 and self.cur_retry == 0:
            time.sleep(120)
        return item, os.getpid(), self.cur_retry

    def post(self, shared: dict[str, Any], prep_res: Any, results: list[Any]) -> None:
        shared["results"] = results


def test_a_worker_process_past_its_timeout_is_killed_and_replaced(
    alive: Callable[[int], bool],
) -> None:
    seen: list[int] = []

    def hung_pids(event: Event) -> None:
        if isinstance(event, TimedOut):
            seen.append(event.index)

    shared: dict[str, Any] = {}
    runner = fk.Runner(process_workers=1, on_event=hung_pids)
    runner.run(HangInWorker(max_retries=2), shared)
    results = shared["results"]
    assert [(item, attempt) for item, _, attempt in results] == [(0, 0), (1, 0), (2, 1), (3, 0)]
    first, after = results[0][1], results[2][1]
    assert after != first  # the retry ran in a fresh worker
    assert not alive(first)  # the stuck one was killed
    assert seen == [2]
    assert runner.last_run.nodes["HangInWorker"].timeouts == 1  # type: ignore[union-attr]


def test_the_report_names_the_timeouts(tmp_path: Path) -> None:
    fk.Runner(report=tmp_path).run(HangOnThree(), {})
    data = json.loads((tmp_path / "report.json").read_text())
    [node] = data["nodes"]
    assert (node["timeouts"], node["timeout"]) == (1, 0.2)
    assert any("ran past the node's timeout of 0.2 s" in f for f in node["findings"])
    assert data["errors"][0]["error_type"] == "ItemTimeoutError"


class SyncOnLoop(fk.BatchNode):
    timeout = 1

    def exec(self, item: int) -> int:
        return item


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: fk.Runner().run(SyncOnLoop(), {}), "executor='thread'"),
        (lambda: fk.Runner(timeouts={"Nope": 1}).run(HangOnThree(), {}), "unknown node"),
        (lambda: fk.Runner(timeouts={"HangOnThree": 0}), "positive number of seconds"),
        (lambda: HangOnThree(timeout=-1), "positive number of seconds"),
        (lambda: fk.Runner().run(HangOnThree(timeout=float("inf")), {}), "positive number"),
    ],
)
def test_bad_timeouts_are_refused_before_any_work(make: Callable[[], Any], match: str) -> None:
    with pytest.raises(fk.ConfigError, match=match):
        make()


def test_a_non_numeric_timeout_attribute_is_left_to_the_node() -> None:
    class OwnTimeout(fk.AsyncNode):
        timeout = "30s"  # the node's own setting, say for an HTTP client

        async def exec_async(self, prep_res: Any) -> str:
            return self.timeout

    with pytest.warns(fk.FlowkitWarning, match="not a flowkit runner option"):
        assert fk.Runner().run(fk.AsyncFlow(start=OwnTimeout()), {}) is None
