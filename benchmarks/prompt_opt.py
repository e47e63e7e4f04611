"""Prompt optimisation side by side: flowkit's optimiser and the gepa package (0.1.4).

Run by hand (needs the ``gepa`` extra)::

    python benchmarks/prompt_opt.py [--seeds 10] [--noisy-seeds 20] [--latency 0.05]
                                    [--json benchmarks/results/prompt_opt.json]

The task is the bundled one: the 8 clinic dummies, the bundled seed prompt, and the offline
simulated user, assistant, judge and reflector (``flows.prompt_opt.simulated``), the same
for both. gepa runs its own engine through ``flows.prompt_opt.gepa_adapter``, so both draw
on one flowkit limiter (``llm``) and every LLM call is counted the same way (answered calls,
from the run's usage events). Both get the 8 dummies as training and validation set (gepa's
default when given one set; flowkit is given the same set twice, and says so). gepa runs
with its defaults (minibatch 3, no merge, one proposal per iteration); flowkit with its own.
A third row, "flowkit, gepa's loop", is flowkit with each of its departures turned off.

1. **Calls to reach 0.9 and 1.0** (3 in flight, no latency, seeds 0..N-1): at every change
   of the optimiser's best, the true mean score of that best over the 8 dummies (the
   noise-free simulated judge); the first count of LLM calls where it reaches 0.9 and 1.0.
2. **Wall time to reach 1.0** at 3 and at 16 calls in flight, each call taking ``--latency``
   seconds.
3. **A noisy judge** (each requirement's verdict flipped with probability 0.15, fresh on
   every judge call; 20 seeds; 3 in flight; a budget of ``--noisy-budget`` LLM calls, gepa
   stopped by the same rule as flowkit: no iteration starts unless its worst case fits):
   the score each optimiser reports for its final best, against that best's true score under
   this judge (its expected noisy score; the noise-free score is in the JSON too). The gap
   is selection bias: a best picked because its noisy scores came out high.

Prints one table (median, min-max over seeds) and writes every figure to JSON.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from _results import write_results

import flowkit as fk
from flows.prompt_opt import (
    SEED_PROMPT,
    BestChanged,
    DummiesTask,
    PromptOptConfig,
    Verdict,
    llm_limits,
    load_dummies,
    optimize_prompt,
    role_settings,
    simulated,
)
from flows.prompt_opt.gepa_adapter import run_gepa
from flows.prompt_opt.prompts import Message
from flows.prompt_opt.scenario import Dummy
from nodes.llm import LLMSettings, Simulation

FLIP = 0.15
GEPA_ITERATION = 2 * 3 * 7 + 1 + 8 * 7
"""gepa's worst iteration in calls: parent and child on 3 dummies, a rewrite, a full
validation (7 calls a conversation)."""
GEPA_LOOP = {
    "proposals": 1,
    "sampler": "epoch",
    "merge": "off",
    "rescore": "never",
    "show_rejected": False,
}
"""flowkit options that undo its departures from gepa's loop."""


def conversation(dummy: Dummy, system: str, turns: int = 3) -> list[Message]:
    messages: list[Message] = []
    for turn in range(turns):
        messages.append({"role": "user", "content": simulated.user_message(dummy, turn)})
        messages.append({"role": "assistant", "content": simulated.assistant_reply(system, turn)})
    return messages


def true_scores(components: Mapping[str, str], dummies: Sequence[Dummy]) -> tuple[float, float]:
    """The noise-free mean score, and the expected mean score under the noisy judge."""
    system = DummiesTask().render(components)
    clean, expected = [], []
    for dummy in dummies:
        said = " ".join(
            m["content"] for m in conversation(dummy, system) if m["role"] == "assistant"
        )
        met = [bool(r.cue and r.cue.lower() in said.lower()) for r in dummy.satisfied_when]
        clean.append(sum(met) / len(met))
        expected.append(sum((1 - FLIP) if m else FLIP for m in met) / len(met))
    return statistics.mean(clean), statistics.mean(expected)


class NoisyDummies(DummiesTask):
    """The simulated judge, each requirement's verdict flipped with probability ``FLIP``."""

    def __init__(self, settings: Any, seed: int) -> None:
        super().__init__(settings)
        self.seed = seed

    def simulated_verdict(self, dummy: Dummy, messages: Sequence[Message], key: str) -> Verdict:
        rng = random.Random(f"{self.seed}:{key}")
        said = " ".join(m["content"] for m in messages if m["role"] == "assistant").lower()
        met, notes = 0, []
        for req in dummy.satisfied_when:
            ok = bool(req.cue and req.cue.lower() in said)
            if rng.random() < FLIP:
                ok = not ok
            met += ok
            notes.append(
                f"Met: {req.need}."
                if ok
                else f"Not met: {req.need}. The assistant should {req.instruction}."
            )
        return Verdict(score=met / len(dummy.satisfied_when), feedback=" ".join(notes))


class CallCounter:
    """Answered LLM calls of a run, from its usage events, and the time since its start."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, event: fk.events.Event) -> None:
        if event.kind == "usage":
            with self.lock:
                self.calls += int(event.data.get("calls", 0))

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def settings_for(latency: float) -> Any:
    return role_settings(
        LLMSettings(provider="simulated", simulation=Simulation(latency_s=latency))
    )


def run_flowkit(
    seed: int,
    limit: int,
    latency: float,
    *,
    options: Mapping[str, Any],
    noisy: bool = False,
    budget: int = 2000,
) -> dict[str, Any]:
    dummies = load_dummies()
    settings = settings_for(latency)
    task = NoisyDummies(settings, seed) if noisy else DummiesTask(settings)
    counter = CallCounter()
    bests: list[tuple[int, float, float, float]] = []

    def on_best(event: Any) -> None:
        if isinstance(event, BestChanged):
            clean, _ = true_scores(event.components, dummies)
            bests.append((counter.calls, counter.elapsed(), clean, event.score))

    runner = fk.Runner(limits=llm_limits(limit), on_event=counter, progress=False)
    config = PromptOptConfig(seed=seed, budget=budget, **options)
    counter.started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = optimize_prompt(
            train=dummies,
            val=dummies,
            task=task,
            settings=settings,
            config=config,
            runner=runner,
            callbacks=[on_best],
        )
    clean, expected = true_scores(result.best_components, dummies)
    return {
        "bests": bests,
        "calls": counter.calls,
        "reported": result.best_score,
        "true_clean": clean,
        "true_expected": expected,
        "candidates": len(result.candidates),
        "rescored": result.rescored,
    }


def run_gepa_side(
    seed: int, limit: int, latency: float, *, noisy: bool = False, budget: int = 2000
) -> dict[str, Any]:
    dummies = load_dummies()
    settings = settings_for(latency)
    task = NoisyDummies(settings, seed) if noisy else DummiesTask(settings)
    counter = CallCounter()
    bests: list[tuple[int, float, float, float]] = []
    reached = threading.Event()

    class Track:
        def on_valset_evaluated(self, event: Any) -> None:
            if event["is_best_program"]:
                clean, _ = true_scores(event["candidate"], dummies)
                bests.append((counter.calls, counter.elapsed(), clean, event["average_score"]))
                if clean >= 1.0 and not noisy:
                    reached.set()

    def stop(state: Any) -> bool:
        return reached.is_set() or counter.calls + GEPA_ITERATION > budget

    runner = fk.Runner(limits=llm_limits(limit), on_event=counter, progress=False)
    counter.started = time.monotonic()
    run = run_gepa(
        task,
        {"system_prompt": SEED_PROMPT},
        dummies,
        dummies,
        reflect=settings["reflect"],
        runner=runner,
        seed=seed,
        callbacks=[Track()],
        stop_callbacks=[stop],
    )
    result = run.result
    best = result.candidates[result.best_idx]
    clean, expected = true_scores(best, dummies)
    return {
        "bests": bests,
        "calls": counter.calls,
        "reported": result.val_aggregate_scores[result.best_idx],
        "true_clean": clean,
        "true_expected": expected,
        "candidates": len(result.candidates),
    }


def first(
    bests: Sequence[tuple[int, float, float, float]], threshold: float, field: int
) -> float | None:
    for entry in bests:
        if entry[2] >= threshold - 1e-9:
            return entry[field]
    return None


def summary(values: Sequence[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    if not got:
        return {"median": None, "min": None, "max": None, "missed": len(values)}
    return {
        "median": statistics.median(got),
        "min": min(got),
        "max": max(got),
        "mean": statistics.mean(got),
        "missed": len(values) - len(got),
    }


def cell(s: Mapping[str, Any], fmt: str = "{:.0f}") -> str:
    if s.get("median") is None:
        return "not reached"
    text = f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"
    return text + (f", {s['missed']} missed" if s.get("missed") else "")


Runner = Callable[..., dict[str, Any]]


def contenders() -> dict[str, Runner]:
    return {
        "flowkit defaults": lambda *a, **k: run_flowkit(*a, options={}, **k),
        "flowkit, gepa's loop": lambda *a, **k: run_flowkit(*a, options=GEPA_LOOP, **k),
        "gepa 0.1.4 defaults": run_gepa_side,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--noisy-seeds", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per call (wall)")
    parser.add_argument("--noisy-budget", type=int, default=800)
    parser.add_argument("--json", default="benchmarks/results/prompt_opt.json")
    args = parser.parse_args()
    out: dict[str, Any] = {"python": sys.version.split()[0], "flip": FLIP, "contenders": {}}
    for name, run in contenders().items():
        row: dict[str, Any] = {}
        calls = [run(seed, 3, 0.0) for seed in range(args.seeds)]
        row["calls_runs"] = calls
        row["calls_to_0.9"] = summary([first(r["bests"], 0.9, 0) for r in calls])
        row["calls_to_1.0"] = summary([first(r["bests"], 1.0, 0) for r in calls])
        for limit in (3, 16):
            walls = [run(seed, limit, args.latency) for seed in range(args.seeds)]
            row[f"wall_runs_{limit}"] = walls
            row[f"wall_to_1.0_at_{limit}"] = summary([first(r["bests"], 1.0, 1) for r in walls])
        noisy = [
            run(seed, 3, 0.0, noisy=True, budget=args.noisy_budget)
            for seed in range(args.noisy_seeds)
        ]
        row["noisy_runs"] = noisy
        row["noisy_gap"] = summary([r["reported"] - r["true_expected"] for r in noisy])
        row["noisy_true"] = summary([r["true_expected"] for r in noisy])
        row["noisy_clean"] = summary([r["true_clean"] for r in noisy])
        out["contenders"][name] = row
        print(f"{name}: done", file=sys.stderr)
    print(
        f"{'run':<22} {'calls to 0.9':>18} {'calls to 1.0':>18} {'wall to 1.0 @3 s':>20} "
        f"{'wall to 1.0 @16 s':>20} {'noisy gap (mean)':>17} {'noisy true':>11}"
    )
    for name, row in out["contenders"].items():
        print(
            f"{name:<22} {cell(row['calls_to_0.9']):>18} {cell(row['calls_to_1.0']):>18} "
            f"{cell(row['wall_to_1.0_at_3'], '{:.2f}'):>20} "
            f"{cell(row['wall_to_1.0_at_16'], '{:.2f}'):>20} "
            f"{row['noisy_gap']['mean']:>+17.3f} {row['noisy_true']['mean']:>11.3f}"
        )
    write_results(args.json, out)


if __name__ == "__main__":
    main()
