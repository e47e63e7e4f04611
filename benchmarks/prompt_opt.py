"""Prompt-optimisation benchmark: the hand-written optimiser's shape, run as a flowkit flow.

Run by hand: ``python benchmarks/prompt_opt.py [--latency S] [--big-latency S] [--json PATH]``.
Prints a table and writes every figure to JSON (default benchmarks/results/prompt_opt.json).

Two workloads in generational mode (every candidate x every dummy each generation, 3 turns
per conversation, so 7 calls in a row per conversation), on the simulated provider with a
fixed latency per call: the seed's 2 prompts x 2 dummies x 2 generations, and a bigger
8 x 8 x 3. Each runs (a) one call at a time, (b) 3 calls in flight (the seed's semaphore),
(c) 16 in flight. The bound is the shortest wall time the limit allows: per phase (a
generation's conversations; a round's rewrites) the larger of calls x latency / limit and
the phase's longest chain of calls that must follow one another (a conversation's turns).
Targets: (b) >= 90 % of its bound, (c) >= 85 %; every run finds the same candidates with
the same scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from _results import write_results

import flowkit as fk
from flows.prompt_opt import (
    SEED_PROMPT,
    PromptOptConfig,
    PromptOptResult,
    load_dummies,
    optimize_prompt,
    role_settings,
)
from nodes.llm import LLMSettings, Simulation

LIMITS = {"a_sequential": 1, "b_3_in_flight": 3, "c_16_in_flight": 16}


def bound(result: PromptOptResult, limit: int, latency: float) -> float:
    """The least wall time ``limit`` calls in flight allow for this run's phases."""
    return sum(max(int(p["calls"]) / limit, int(p["chain"])) * latency for p in result.phases)


def workload(prompts: int, dummies: int, generations: int, latency: float) -> dict[str, Any]:
    settings = role_settings(
        LLMSettings(provider="simulated", simulation=Simulation(latency_s=latency))
    )
    seeds = [f"{SEED_PROMPT}- Sign every reply as desk {n + 1}.\n" for n in range(prompts)]
    config = PromptOptConfig(
        mode="generational",
        budget=None,
        generations=generations,
        proposals=prompts,
        merges=0,
        turns=3,
        patience=generations,
    )
    runs: dict[str, Any] = {}
    scores = {}
    for name, limit in LIMITS.items():
        runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=limit)}, progress=False)
        started = time.perf_counter()
        result = optimize_prompt(
            load_dummies()[:dummies], seeds, config=config, settings=settings, runner=runner
        )
        wall = time.perf_counter() - started
        least = bound(result, limit, latency)
        scores[name] = [(c.id, c.text, c.scores) for c in result.candidates]
        runs[name] = {
            "limit": limit,
            "wall_s": wall,
            "calls": sum(result.calls.values()),
            "bound_s": least,
            "share_of_bound": least / wall,
            "peak_in_flight": max(u.peak_in_flight for u in result.limiters),
            "best_score": result.best_score,
        }
    base = runs["a_sequential"]["wall_s"]
    for run in runs.values():
        run["speedup"] = base / run["wall_s"]
    first = next(iter(scores.values()))
    return {
        "prompts": prompts,
        "dummies": dummies,
        "generations": generations,
        "latency_s": latency,
        "same_scores": all(s == first for s in scores.values()),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per call, 2x2x2")
    parser.add_argument("--big-latency", type=float, default=0.1, help="seconds per call, 8x8x3")
    parser.add_argument("--json", default="benchmarks/results/prompt_opt.json")
    args = parser.parse_args()
    results = {
        "seed_2x2x2": workload(2, 2, 2, args.latency),
        "big_8x8x3": workload(8, 8, 3, args.big_latency),
    }
    print(
        f"{'workload':<11} {'run':<15} {'calls':>5} {'wall s':>7} {'speedup':>7} "
        f"{'bound s':>7} {'of bound':>8} {'peak':>4}"
    )
    for name, w in results.items():
        for run_name, r in w["runs"].items():
            print(
                f"{name:<11} {run_name:<15} {r['calls']:>5} {r['wall_s']:>7.2f} "
                f"{r['speedup']:>6.2f}x {r['bound_s']:>7.2f} {r['share_of_bound']:>8.1%} "
                f"{r['peak_in_flight']:>4}"
            )
        print(f"{name:<11} same candidates and scores in every run: {w['same_scores']}")
    write_results(args.json, {"python": sys.version.split()[0], **results})


if __name__ == "__main__":
    main()
