"""batt on every executor: the same ARC tasks, sequential vs threads vs processes vs Ray vs the
vectorised path, timed in one run, each with its solved count (they must agree).

Run by hand: ``python benchmarks/batt.py [--limit N] [--skip ray,vectorized] [--json PATH]``.
Prints a table and writes JSON (default benchmarks/results/batt.json). The full 400 training
tasks take a while: about (sequential time) x (2 + 4 / cores).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _results import write_results

import flowkit as fk
from flowkit.executors import cpu_count
from flows.batt.cli import arc_tasks
from flows.batt.flow import build_flow, validate_tasks

MODES = ("sequential", "thread", "process", "ray", "vectorized")


def run_mode(mode: str, tasks: dict[str, Any]) -> dict[str, Any]:
    kind = "process" if mode == "vectorized" else mode
    flow = build_flow(kind, vectorized=mode == "vectorized")  # type: ignore[arg-type]
    shared: dict[str, Any] = {"tasks": tasks}
    t0 = time.perf_counter()
    fk.Runner(progress=False).run(flow, shared)
    wall = time.perf_counter() - t0
    summaries = shared["summaries"]
    return {
        "wall_s": wall,
        "solved": sum(s.solved for s in summaries.values()),
        "predictions": {k: s.predictions for k, s in summaries.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="only the first N training tasks")
    parser.add_argument("--skip", default="", help="comma-separated modes to skip")
    parser.add_argument("--json", default="benchmarks/results/batt.json")
    args = parser.parse_args()
    skip = {m.strip() for m in args.skip.split(",") if m.strip()}
    tasks, bad = validate_tasks(arc_tasks("training", None, args.limit))
    assert not bad, bad
    if "ray" not in skip:  # start the cluster before timing
        fk.Runner(progress=False).run(build_flow("ray"), {"tasks": dict(list(tasks.items())[:1])})
    results: dict[str, Any] = {}
    for mode in MODES:
        if mode in skip:
            continue
        results[mode] = run_mode(mode, tasks)
        r = results[mode]
        print(f"  {mode:<11} {r['wall_s']:8.1f} s  solved {r['solved']}", flush=True)
    seq = results.get("sequential", {}).get("wall_s")
    reference = next(iter(results.values()))["predictions"]
    print(f"{len(tasks)} tasks on {cpu_count()} cores")
    print(f"  {'mode':<11} {'wall':>8}   {'speedup':>7}  {'solved':>6}  same predictions")
    for mode, r in results.items():
        speed = f"{seq / r['wall_s']:7.2f}x" if seq else "      -"
        same = r["predictions"] == reference
        print(f"  {mode:<11} {r['wall_s']:7.1f} s {speed}  {r['solved']:6}  {same}")
    if seq and "process" in results:
        per_core = seq / results["process"]["wall_s"] / cpu_count()
        print(f"processes: {per_core:.2f} x core count faster than sequential (target >= 0.85)")
    out = {
        "tasks": len(tasks),
        "cores": cpu_count(),
        "modes": {
            m: {
                "wall_s": r["wall_s"],
                "solved": r["solved"],
                "same_predictions": r["predictions"] == reference,
            }
            for m, r in results.items()
        },
    }
    write_results(args.json, out)


if __name__ == "__main__":
    main()
