"""Work in threads in the report: waiting for a thread is waiting, and CPU-bound work never
shows more running than the cores it had once it says it computes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.executors import cpu_count
from flowkit.report import load_report


def spin(seconds: float) -> None:
    end = time.thread_time() + seconds  # CPU seconds: the GIL shares them out
    while time.thread_time() < end:
        pass


class Crunch(fk.BatchNode):
    executor = "thread"
    max_concurrency = 6

    def prep(self, shared):
        return range(12)

    def exec(self, item):
        spin(0.02)
        return item


class CrunchInExec(fk.AsyncParallelBatchNode):
    max_concurrency = 12

    async def prep_async(self, shared):
        return range(12)

    async def exec_async(self, item):
        return await fk.to_thread(spin, 0.02, cpu_bound=True)


@pytest.mark.parametrize("declared", [False, True])
def test_cpu_bound_threads_run_on_no_more_than_the_cores(tmp_path: Path, declared: bool) -> None:
    node = Crunch(cpu_bound=declared) if declared else Crunch()
    fk.Runner(report=tmp_path, progress=False, thread_workers=6).run(node, {})
    [report] = load_report(tmp_path).nodes
    assert report.cpu_time >= 12 * 0.02 * 0.9
    if declared:
        assert report.exec_time <= cpu_count() * report.wall_time * 1.05 + 0.01
        assert report.off_cpu_time == 0 and not any("GIL" in f for f in report.findings)
    else:  # six threads share the GIL: their time off the CPU counted as running, and said so
        assert report.off_cpu_time > 0.1 * report.exec_time
        assert any("off the CPU" in f and "executor='process'" in f for f in report.findings)


def test_to_thread_counts_the_wait_for_a_thread_and_for_a_cpu(tmp_path: Path) -> None:
    fk.Runner(report=tmp_path, progress=False, thread_workers=2).run(CrunchInExec(), {})
    report = load_report(tmp_path)
    [node] = report.nodes
    assert report.queued >= 10  # twelve calls, two threads: ten waited for one (in the chart)
    assert node.wait_time > 0
    assert node.peak_in_flight <= 2  # only calls in a thread were running
    assert node.exec_time <= cpu_count() * node.wall_time * 1.05 + 0.01
