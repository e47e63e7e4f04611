"""Chapter 9: a GEPA prompt optimiser, from nested gather + semaphore to a flow.

A hand-written optimiser tested every candidate system prompt against simulated users
("dummies") with ``asyncio.gather`` over prompts, ``asyncio.gather`` over dummies inside,
and a semaphore of 3 around each API call, and reported an 8x speedup on 2 prompts x 2
dummies x 2 generations. Under a semaphore of 3, equal calls can never run more than 3x
faster than one at a time: that figure was an estimate nobody measured.

Part 1 measures the hand-written shape. Part 2 runs the same workload as the bundled
``prompt-opt`` flow, where the same limit is a runner limiter taken per LLM call (a
conversation waiting for its next turn holds no slot), and prints what the limiter really
reached. Part 3 lets the flow optimise for real (offline), GEPA-style, on dummies split
into training (minibatch gates and the reflector's evidence), validation (the Pareto front
and the best) and test (scored once at the end): a callback prints each child accepted.

Run: python cookbook/09_prompt_optimisation.py
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import warnings
from pathlib import Path

import flowkit as fk
from flows.prompt_opt import (
    SEED_PROMPT,
    CandidateAccepted,
    OptEvent,
    PromptOptConfig,
    PromptOptWarning,
    llm_limits,
    load_dummies,
    optimize_prompt,
    role_settings,
)
from nodes.llm import LLMSettings, Simulation

LATENCY = 0.1  # seconds per simulated API call
TURNS = 3  # a conversation: 3 user and 3 assistant calls in turn, then the judge


async def hand_written(prompts: int, dummies: int, generations: int) -> tuple[float, int, int]:
    """The original shape: nested gathers, a semaphore of 3 around each call."""
    semaphore = asyncio.Semaphore(3)
    in_flight = peak = calls = 0

    async def api_call() -> None:
        nonlocal in_flight, peak, calls
        async with semaphore:
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(LATENCY)
            in_flight -= 1
            calls += 1

    async def conversation() -> None:
        for _ in range(TURNS):
            await api_call()  # the user simulator
            await api_call()  # the assistant
        await api_call()  # the judge

    async def test_prompt() -> None:
        await asyncio.gather(*(conversation() for _ in range(dummies)))

    started = time.perf_counter()
    for generation in range(generations):
        if generation:
            await asyncio.gather(*(api_call() for _ in range(prompts)))  # the rewrites
        await asyncio.gather(*(test_prompt() for _ in range(prompts)))
    return time.perf_counter() - started, peak, calls


def main() -> None:
    print("Part 1: the hand-written optimiser, measured (2 prompts x 2 dummies x 2 generations)")
    wall, peak, calls = asyncio.run(hand_written(2, 2, 2))
    one_at_a_time = calls * LATENCY
    print(
        f"  {calls} calls of {LATENCY:g} s: {wall:.2f} s; one at a time they take "
        f"{one_at_a_time:.2f} s: speedup {one_at_a_time / wall:.1f}x (claimed: 8x), "
        f"peak {peak} calls in flight"
    )

    print("Part 2: the same workload as the prompt-opt flow, 3 LLM calls in flight")
    settings = role_settings(
        LLMSettings(provider="simulated", simulation=Simulation(latency_s=LATENCY))
    )
    config = PromptOptConfig(
        mode="generational", generations=2, budget=None, proposals=2, merge="off", turns=TURNS
    )
    seeds = [SEED_PROMPT, SEED_PROMPT + "- Sign every reply as the front desk.\n"]
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=3)})
    two = load_dummies()[:2]
    with warnings.catch_warnings():  # as the hand-written one did: one set for everything
        warnings.simplefilter("ignore", PromptOptWarning)
        result = optimize_prompt(
            train=two, val=two, seed_prompts=seeds, config=config, settings=settings, runner=runner
        )
    calls = sum(result.calls.values())
    one_at_a_time = calls * LATENCY
    print(
        f"  {calls} calls: {result.wall_time:.2f} s; one at a time {one_at_a_time:.2f} s: "
        f"speedup {one_at_a_time / result.wall_time:.1f}x"
    )
    for use in result.limiters:
        print(
            f"  limiter {use.name}: peak {use.peak_in_flight}/{use.max_concurrency} calls in "
            f"flight, mean {use.mean_in_flight:.2f} while active: the real concurrency"
        )

    print("Part 3: optimising the clinic assistant's prompt (GEPA mode, offline)")
    fast = role_settings(LLMSettings(provider="simulated", simulation=Simulation(latency_s=0)))

    def accepted(event: OptEvent) -> None:
        if isinstance(event, CandidateAccepted):
            print(
                f"  round {event.round}: {event.candidate} ({event.how} of "
                f"{', '.join(event.parents)}) accepted, validation {event.val_score:.2f}, "
                f"{event.calls} calls so far"
            )

    with tempfile.TemporaryDirectory() as out:
        result = optimize_prompt(
            settings=fast,
            output=out,
            split=(0.5, 0.25, 0.25),  # 4 training, 2 validation, 2 test dummies
            callbacks=[accepted],
            runner=fk.Runner(limits=llm_limits(), progress=False),
        )
        written = sorted(p.name for p in Path(out).iterdir())
    print(f"  splits: {result.splits.how}")
    print(
        f"  validation {result.seed_score:.2f} (seed) -> {result.best_score:.2f} (best) in "
        f"{result.rounds} rounds, {result.billed} LLM calls billed; {result.stop_reason}"
    )
    print(
        f"  test, scored once at the end: seed {result.seed_test_score:.2f}, best "
        f"{result.test_score:.2f}: the held-out dummies show how much of what the training "
        "dummies taught carries over (here, where most needs are personal, little)"
    )
    print(f"  the output folder holds: {', '.join(written)}")


if __name__ == "__main__":
    main()
