"""The report's figures are true for any graph: property-based runs over generated flows.

Hypothesis draws how the node is reached (a node alone, a batch flow, batch flows in batch
flows, ``Parallel`` branches), where its limit is taken (its own limit, ``uses``, a limiter
taken inside exec, ``waiting()``, the LLM client) and where exec runs (the event loop,
threads, processes). Each exec call returns the stretches it was running and, where it took
a limiter itself, the stretches it held it, from its own clock; the test counts from those and
checks that the report says the same: peaks, running time, mean in flight, lanes, the
limiter's peak, and that CPU-bound work never runs on more cores than there are.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowkit as fk
from flowkit.executors import cpu_count
from flowkit.report import load_report
from flowkit.report.model import NodeReport, RunReport
from nodes.llm import LLMClient, LLMSettings

Spans = list[tuple[float, float]]
LIMIT = "lim"


@dataclass(frozen=True)
class Shape:
    executor: str  # loop | thread | process
    where: str  # node | uses | exec | waiting | llm
    nesting: str  # alone | batch_flow | nested | parallel
    items: int
    outer: int
    limit: int


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    executor = draw(st.sampled_from(["loop", "thread", "process"]))
    where = draw(
        st.sampled_from(
            ["node", "uses", "exec", "waiting", "llm"] if executor == "loop" else ["node", "uses"]
        )
    )
    nesting = draw(st.sampled_from(["alone", "batch_flow", "nested", "parallel"]))
    return Shape(
        executor,
        where,
        nesting,
        items=draw(st.integers(2, 6)),
        outer=draw(st.integers(1, 3)),
        limit=draw(st.integers(1, 3)),
    )


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Sync(fk.BatchNode):
    """exec in threads (a sleep: blocking I/O) or processes (a spin: CPU work)."""

    def prep(self, shared):
        return range(shared["items"])

    def exec(self, item):
        start = time.monotonic()
        if self.executor == "process":
            spin(0.01)
        else:
            time.sleep(0.01)
        return {"node": self.name, "run": [(start, time.monotonic())], "held": []}

    def post(self, shared, prep_res, exec_res):
        shared["calls"].extend(exec_res)


class Async(fk.AsyncParallelBatchNode):
    """exec on the event loop; ``where`` says how it meets its limit."""

    def __init__(self, where: str, **options: Any) -> None:
        super().__init__(**options)
        self.where = where

    async def prep_async(self, shared):
        return range(shared["items"])

    async def exec_async(self, item):
        run: Spans = []
        held: Spans = []
        if self.where == "exec":
            lim = fk.current_limiter(LIMIT)
            assert lim is not None
            await lim.acquire()  # first thing: the call counts as waiting until it has it
            start = time.monotonic()
            await asyncio.sleep(0.005 + 0.002 * (item % 3))
            end = time.monotonic()
            lim.release()
            run.append((start, end))
            held.append((start, end))
        elif self.where == "waiting":
            start = time.monotonic()
            await asyncio.sleep(0.004)
            paused = time.monotonic()
            with fk.waiting("a queue"):
                await asyncio.sleep(0.004)
            resumed = time.monotonic()
            await asyncio.sleep(0.003)
            run += [(start, paused), (resumed, time.monotonic())]
        elif self.where == "llm":
            client = LLMClient(LLMSettings(provider="simulated", limiter=LIMIT))
            await client.chat(f"item {item}")
        else:  # node, uses: the whole call runs
            start = time.monotonic()
            await asyncio.sleep(0.005 + 0.002 * (item % 3))
            run.append((start, time.monotonic()))
        return {"node": self.name, "run": run, "held": held}

    async def post_async(self, shared, prep_res, exec_res):
        shared["calls"].extend(exec_res)


class Outer(fk.AsyncParallelBatchFlow):
    async def prep_async(self, shared):
        return [{"k": k} for k in range(shared["outer"])]


def work_node(shape: Shape, name: str) -> fk.BaseNode:
    options: dict[str, Any] = {"name": name}
    if shape.where in ("node", "waiting"):
        options["max_concurrency"] = shape.limit
    if shape.where == "uses":
        options["uses"] = (LIMIT,)
    if shape.executor == "loop":
        return Async(shape.where, **options)
    return Sync(executor=shape.executor, **options)


def build(shape: Shape) -> tuple[fk.BaseNode, dict[str, Any], fk.Runner]:
    node = work_node(shape, "Work")
    if shape.nesting == "batch_flow":
        node = Outer(start=node)
    elif shape.nesting == "nested":
        node = Outer(start=Outer(start=node, name="Inner"))
    elif shape.nesting == "parallel":
        node = fk.Parallel(node, work_node(shape, "Other"), into="branches")
    limits: dict[str, int | fk.Limit] = {}
    if shape.where in ("uses", "exec", "llm"):
        limits[LIMIT] = fk.Limit(max_concurrency=shape.limit)
    shared = {"items": shape.items, "outer": shape.outer, "calls": []}
    runner = fk.Runner(limits=limits, process_workers=2, progress=False, detect_blocking=None)
    return node, shared, runner


def peak(spans: Spans) -> int:
    """The most stretches open at once; one ending when another starts does not overlap."""
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    level = best = 0
    for _, step in points:
        level += step
        best = max(best, level)
    return best


def node_report(report: RunReport, name: str) -> NodeReport:
    return next(n for n in report.nodes if n.name == name)


def expected_items(shape: Shape) -> int:
    if shape.nesting == "batch_flow":
        return shape.items * shape.outer
    if shape.nesting == "nested":
        return shape.items * shape.outer * shape.outer
    return shape.items


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shape=shapes())
def test_the_report_tells_what_the_calls_themselves_saw(shape: Shape, tmp_path: Path) -> None:
    out = tmp_path / f"report-{abs(hash(shape))}"
    node, shared, runner = build(shape)
    runner.report = out
    runner.run(node, shared)
    report = load_report(out)
    lim = next((x for x in report.limiters if x.name == LIMIT), None)
    names = ["Work", "Other"] if shape.nesting == "parallel" else ["Work"]
    all_running: Spans = []
    all_held: Spans = []
    for name in names:
        calls = [c for c in shared["calls"] if c["node"] == name]
        stats = node_report(report, name)
        assert stats.items == len(calls) == expected_items(shape)
        if shape.where == "llm":  # the client's own stretches are not visible here
            assert lim is not None and stats.peak_in_flight <= lim.peak_in_flight <= shape.limit
            continue
        running = [s for c in calls for s in c["run"]]
        all_running += running
        all_held += [s for c in calls for s in c["held"]] or running
        counted = peak(running)
        assert stats.peak_in_flight == counted, (shape, name, stats.peak_in_flight, counted)
        assert counted <= shape.limit
        total = sum(b - a for a, b in running)
        slack = 0.002 * len(running) + 0.02 + 0.05 * total
        assert abs(stats.exec_time - total) <= slack, (shape, name, stats.exec_time, total)
        if stats.busy_time > 0.05:
            assert abs(stats.mean_in_flight - stats.exec_time / stats.busy_time) < 1e-9
            assert 1.0 <= stats.mean_in_flight <= counted + 1e-9
        if shape.executor == "process":  # CPU-bound: never more running than cores
            assert stats.exec_time <= cpu_count() * stats.wall_time * 1.05 + 0.01
    if len(names) == 1 and shape.where != "llm":
        assert report.lanes == peak(all_running)
    if lim is not None and shape.where != "llm":
        assert lim.peak_in_flight == peak(all_held) <= shape.limit
