"""Limits that learn: paces from stated quotas, probing, Retry-After pauses, back-off and AIMD
concurrency, on a virtual clock (the LLM layer's tests run them against the local server)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import flowkit as fk
from flowkit.adaptive import AUTO_CEILING, RATE_BACKOFF, RATE_RECOVERY, START_CONCURRENCY
from flowkit.errors import ConfigError
from flowkit.limits import NamedLimiter
from flowkit.runner.current import LimiterHandle
from tests.core.virtual_time import FakeClock


async def settle() -> None:
    """Let every task that can run, run (no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


def limiter(limit: fk.Limit, clock: FakeClock) -> NamedLimiter:
    return NamedLimiter("llm", limit, clock=clock, sleep=clock.sleep)


async def starts_of(lim: NamedLimiter, clock: FakeClock, calls: int) -> list[float]:
    """When each of ``calls`` calls (taken at once, ended at once) started."""
    starts: list[float] = []

    async def call() -> None:
        await lim.acquire()
        starts.append(clock())
        lim.release()

    await asyncio.gather(*(call() for _ in range(calls)))
    return starts


async def test_auto_rpm_paces_at_the_stated_rate_less_the_margin() -> None:
    clock = FakeClock()
    lim = limiter(fk.Limit(rpm="auto"), clock)
    lim.auto.answered(fk.Quota(limit=600, period_s=60))  # 10 a second
    starts = await starts_of(lim, clock, 30)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([1 / 9.8] * 29)
    stats = lim.stats()
    assert stats.learns == ("rpm",)
    assert stats.rpm == 600 and stats.paced_rpm == pytest.approx(588)
    assert stats.limits_text() == "auto rpm: told 600, pacing 588"


async def test_before_it_is_told_anything_it_probes_one_call_then_two_per_answer() -> None:
    clock = FakeClock()
    lim = limiter(fk.Limit(rpm="auto"), clock)
    running: list[asyncio.Event] = []

    async def call() -> None:
        await lim.acquire()
        done = asyncio.Event()
        running.append(done)
        await done.wait()
        lim.auto.answered()  # no quota stated: still nothing known
        lim.release()

    tasks = [asyncio.create_task(call()) for _ in range(10)]
    await settle()
    assert len(running) == 1
    running[0].set()
    await settle()
    assert len(running) == 3
    running[1].set()
    running[2].set()
    await settle()
    assert len(running) == 7
    while not all(task.done() for task in tasks):
        for done in running:
            done.set()
        await settle()
    assert lim.stats().paced_rpm is None  # probing is not pacing


async def test_a_stated_quota_ends_probing_and_paces_the_calls_waiting() -> None:
    clock = FakeClock()
    lim = limiter(fk.Limit(rpm="auto"), clock)
    await lim.acquire()
    waiting = asyncio.ensure_future(starts_of(lim, clock, 5))
    await settle()
    assert not waiting.done()  # the probe is out: nobody else starts
    lim.auto.answered(fk.Quota(limit=6000))  # 100 a second
    lim.release()
    starts = await waiting
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([1 / 98] * 4)


async def test_a_refusal_holds_every_start_for_its_retry_after_and_backs_off_once() -> None:
    clock = FakeClock()
    lim = limiter(fk.Limit(rpm="auto"), clock)
    lim.auto.answered(fk.Quota(limit=600))
    await starts_of(lim, clock, 3)
    sent = clock()
    lim.auto.refused(2.0, sent_at=sent)
    lim.auto.refused(2.0, sent_at=sent)  # sent before the back-off: no second back-off
    starts = await starts_of(lim, clock, 2)
    assert starts[0] == pytest.approx(sent + 2.0)
    # Backed off once, and recovering since: two seconds' worth when the next start is set.
    share = RATE_BACKOFF + 2 * RATE_RECOVERY
    assert starts[1] - starts[0] == pytest.approx(60 / (588 * share))
    stats = lim.stats()
    assert stats.refused == 2 and stats.paused_s == pytest.approx(2.0)


async def test_the_backed_off_pace_recovers_linearly_to_the_stated_rate() -> None:
    clock = FakeClock()
    lim = limiter(fk.Limit(rpm="auto"), clock)
    lim.auto.answered(fk.Quota(limit=600))
    lim.auto.refused()
    assert lim.stats().paced_rpm == pytest.approx(588 * RATE_BACKOFF)
    clock.now += (1 - RATE_BACKOFF) / RATE_RECOVERY / 2
    assert lim.stats().paced_rpm == pytest.approx(588 * (1 + RATE_BACKOFF) / 2)
    clock.now += 60
    assert lim.stats().paced_rpm == pytest.approx(588)
    moves = [rpm for _, rpm, _, _ in lim.stats().moves]
    assert moves == [None, 588, pytest.approx(588 * RATE_BACKOFF)]


async def test_told_only_refusals_it_paces_just_below_what_was_answered_lately() -> None:
    clock = FakeClock()
    lim = limiter(fk.Limit(rpm="auto"), clock)
    for _ in range(40):  # one call every 0.1 s, answered: 10 a second
        await lim.acquire()
        await clock.sleep(0.1)
        lim.auto.answered()
        lim.release()
    lim.auto.refused()
    stats = lim.stats()
    assert stats.rpm is None  # never told
    assert stats.paced_rpm == pytest.approx(40 / 3.9 * 60 * RATE_BACKOFF)


async def test_no_requests_remaining_holds_starts_until_one_is_back() -> None:
    clock = FakeClock()
    lim = limiter(fk.Limit(rpm="auto"), clock)
    lim.auto.answered(fk.Quota(limit=60, remaining=0, reset_s=30))  # one back every second
    starts = await starts_of(lim, clock, 1)
    assert starts == [pytest.approx(30 / 60)]


async def test_adaptive_concurrency_grows_while_full_and_halves_on_refusal_or_timeout() -> None:
    clock = FakeClock()
    lim = limiter(fk.Limit(max_concurrency="auto"), clock)
    assert lim.slots is not None and lim.slots.capacity == START_CONCURRENCY
    for _ in range(START_CONCURRENCY):
        await lim.acquire()
    queued = asyncio.ensure_future(lim.acquire())
    await settle()
    assert not queued.done()
    lim.auto.answered()  # the window was full: one more slot, and the queued call takes it
    await settle()
    assert queued.done() and lim.slots.capacity == START_CONCURRENCY + 1
    lim.auto.refused(sent_at=clock())
    assert lim.slots.capacity == (START_CONCURRENCY + 1) // 2
    lim.auto.timed_out(sent_at=clock() - 1)  # sent before the back-off: says nothing new
    assert lim.slots.capacity == (START_CONCURRENCY + 1) // 2
    clock.now += 1
    lim.auto.timed_out(sent_at=clock())
    assert lim.slots.capacity == 1
    for _ in range(START_CONCURRENCY + 1):
        lim.release()
    stats = lim.stats()
    assert stats.learns == ("concurrency",) and stats.max_concurrency == AUTO_CEILING
    assert stats.concurrency == 1 and stats.concurrency_range == (1, START_CONCURRENCY + 1)
    assert stats.refused == 1 and stats.timeouts == 2
    assert stats.limits_text() == f"auto 1-{START_CONCURRENCY + 1} in flight (last 1, ceiling 64)"


async def test_adaptive_concurrency_never_passes_its_ceiling_nor_grows_unused() -> None:
    clock = FakeClock()
    lim = limiter(fk.Limit(max_concurrency=6, adaptive=True), clock)
    assert lim.slots is not None
    lim.auto.answered()  # nobody in flight: the window was not full
    assert lim.slots.capacity == START_CONCURRENCY
    for _ in range(10):
        while lim.slots.in_use < lim.slots.capacity:
            await lim.acquire()
        lim.auto.answered()  # a full window: slow start widens it by one
    assert lim.slots.capacity == 6 and lim.stats().max_concurrency == 6


async def test_what_a_worker_thread_reports_reaches_the_limiter_on_its_loop() -> None:
    clock = FakeClock()
    lim = limiter(fk.Limit(rpm="auto"), clock)
    await asyncio.to_thread(lim.auto.answered, fk.Quota(limit=1200))
    await settle()
    assert lim.stats().rpm == 1200


async def test_a_fixed_limit_ignores_what_the_provider_says() -> None:
    clock = FakeClock()
    lim = limiter(fk.Limit(rpm=60), clock)
    handle = LimiterHandle(lim)  # what a client inside exec reports through
    handle.answered(fk.Quota(limit=6))
    handle.refused(30.0)
    handle.timed_out()
    starts = await starts_of(lim, clock, 2)
    assert starts == [0.0, pytest.approx(60 / 58.8)]
    stats = lim.stats()
    assert stats.learns == () and stats.rpm == 60 and stats.refused == 0


def test_auto_limits_are_checked() -> None:
    assert fk.Limit(rpm="auto", tpm="auto", max_concurrency="auto").learns == (
        "concurrency",
        "rpm",
        "tpm",
    )
    with pytest.raises(ConfigError, match="or 'auto'"):
        fk.Limit(rpm="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_concurrency=N"):
        fk.Limit(rpm=60, adaptive=True)
    with pytest.raises(ConfigError, match="margin"):
        fk.Limit(rpm=60, margin=1)
