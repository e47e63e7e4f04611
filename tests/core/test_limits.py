"""Limits: per-node counters across the whole run, named limiters, smooth rate limits."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import flowkit as fk
from flowkit.errors import ConfigError
from flowkit.limits import Slots
from flowkit.pacing import RateLimiter
from tests.core.virtual_time import FakeClock


class Probe:
    """Counts exec calls in flight; holds each call until ``target`` are in flight at once.

    If the runner never lets ``target`` calls overlap, the wait times out and the test fails
    instead of hanging.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self.reached = asyncio.Event()

    async def hold(self) -> None:
        self.in_flight += 1
        self.calls += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.target:
            self.reached.set()
        try:
            await asyncio.wait_for(self.reached.wait(), timeout=5)
        finally:
            self.in_flight -= 1


def probe_node(probe: Probe, **options: object) -> fk.AsyncParallelBatchNode:
    class Work(fk.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return list(range(shared.get("n", 20)))

        async def exec_async(self, item):
            await probe.hold()
            return item

        async def post_async(self, shared, prep_res, exec_res):
            shared.setdefault("out", []).append(exec_res)

    return Work(**options)  # type: ignore[arg-type]


async def test_node_limit_is_reached_and_never_exceeded() -> None:
    probe = Probe(target=4)
    shared: dict = {"n": 30}
    await fk.Runner().run_async(fk.AsyncFlow(start=probe_node(probe, max_concurrency=4)), shared)
    assert probe.peak == 4
    assert shared["out"] == [list(range(30))]


async def test_class_attribute_limit() -> None:
    probe = Probe(target=3)

    class Limited(fk.AsyncParallelBatchNode):
        max_concurrency = 3

        async def prep_async(self, shared):
            return range(12)

        async def exec_async(self, item):
            await probe.hold()

    await fk.Runner().run_async(Limited(), {})
    assert probe.peak == 3


async def test_node_limit_is_one_counter_across_parallel_branches() -> None:
    probe = Probe(target=3)

    class Fan(fk.AsyncParallelBatchFlow):
        async def prep_async(self, shared):
            return [{"branch": b} for b in range(8)]

    flow = Fan(start=fk.AsyncFlow(start=probe_node(probe, max_concurrency=3)))
    shared: dict = {"n": 5}
    runner = fk.Runner()
    await runner.run_async(flow, shared)
    assert probe.peak == 3
    assert probe.calls == 40
    assert runner.last_run is not None
    assert runner.last_run.nodes["Work"].peak_in_flight == 3


async def test_runner_limits_override_node_limit_by_name() -> None:
    probe = Probe(target=2)
    node = probe_node(probe, max_concurrency=10, name="embed")
    await fk.Runner(limits={"embed": 2}).run_async(node, {"n": 10})
    assert probe.peak == 2


async def test_named_limiter_is_one_budget_for_nested_fan_out() -> None:
    """Prompts x simulated users both fan out; at most 3 API calls are in flight."""
    probe = Probe(target=3)

    class Converse(fk.AsyncParallelBatchNode):
        uses = ("remote_api",)

        async def prep_async(self, shared):
            return [(self.params["prompt"], user) for user in range(4)]

        async def exec_async(self, item):
            await probe.hold()
            return item

        async def post_async(self, shared, prep_res, exec_res):
            shared[self.params["prompt"]] = exec_res

    class Prompts(fk.AsyncParallelBatchFlow):
        async def prep_async(self, shared):
            return [{"prompt": f"p{i}"} for i in range(5)]

    shared: dict = {}
    runner = fk.Runner(limits={"remote_api": fk.Limit(max_concurrency=3)})
    await runner.run_async(Prompts(start=fk.AsyncFlow(start=Converse())), shared)
    assert probe.peak == 3
    assert runner.last_run is not None
    assert runner.last_run.nodes["Converse"].peak_in_flight == 3
    assert shared["p2"] == [("p2", u) for u in range(4)]


async def paced_starts(limit: fk.Limit, calls: int) -> list[float]:
    """Start times of ``calls`` calls through a limiter ``api`` set to ``limit``, on a fake
    clock."""
    clock = FakeClock()
    starts: list[float] = []

    class Call(fk.AsyncParallelBatchNode):
        uses = ("api",)

        async def prep_async(self, shared):
            return range(calls)

        async def exec_async(self, item):
            starts.append(clock())

    runner = fk.Runner(limits={"api": limit}, clock=clock, sleep=clock.sleep)
    await runner.run_async(Call(), {})
    return sorted(starts)


async def test_rate_limit_spaces_starts_evenly() -> None:
    starts = await paced_starts(fk.Limit(rpm=60, margin=0), 150)
    assert len(starts) == 150
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) == pytest.approx(1.0)
    # No 60 s window, wherever it starts, holds more than 60 starts.
    for i, t in enumerate(starts):
        assert sum(1 for s in starts[i:] if s < t + 60) <= 60


async def test_a_fixed_rpm_is_paced_two_percent_below_the_rate_by_default() -> None:
    starts = await paced_starts(fk.Limit(rpm=60), 150)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) == pytest.approx(60 / 58.8)
    # A window of the period holds at most 59 starts: one to spare for jitter.
    assert max(sum(1 for s in starts[i:] if s < t + 60) for i, t in enumerate(starts)) == 59


async def test_burst_then_steady_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(120, burst=5, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(10):
        await limiter.acquire()
        starts.append(clock())
    assert starts[:5] == [0.0] * 5
    assert starts[5:] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5])


async def test_token_rate_paces_by_tokens_and_accepts_corrections() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, clock=clock, sleep=clock.sleep)  # 600 tokens per minute
    await limiter.acquire(100)  # starts at once, next free at 10 s
    limiter.adjust(-50)  # the call used 50 tokens: next free at 5 s
    await limiter.acquire(10)
    assert clock() == pytest.approx(5.0)


async def test_slots_are_fifo_and_survive_cancelled_waiters() -> None:
    slots = Slots(1)
    assert slots.try_acquire()
    order: list[str] = []

    async def waiter(name: str) -> None:
        await slots.acquire()
        order.append(name)
        slots.release()

    first = asyncio.create_task(waiter("a"))
    cancelled = asyncio.create_task(waiter("b"))
    last = asyncio.create_task(waiter("c"))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    slots.release()
    await asyncio.gather(first, last)
    assert order == ["a", "c"]
    assert slots.in_use == 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_limit_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        fk.AsyncParallelBatchNode(max_concurrency=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="positive integer"):
        fk.Limit(max_concurrency=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="positive integer"):
        fk.Runner(limits={"Node": bad})  # type: ignore[dict-item]


def test_limit_needs_a_bound() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        fk.Limit()
    with pytest.raises(ConfigError, match="positive number"):
        fk.Limit(rpm=0)
