"""Checkpoint store benchmarks: the cost of writing every result, and the time to resume.

Run by hand: ``python benchmarks/store.py [--items N] [--repeats R] [--json PATH]``. Prints a
table and writes JSON (default benchmarks/results/store.json). Each figure is the median of R
runs, with and without a store taking turns; the overhead is the median of the paired ratios.

Two workloads of N small results (default 100 000), each with and without a store:
- "no-op": exec returns at once, so the figure is pure bookkeeping per item;
- "io 1ms": exec awaits 1 ms of simulated I/O with 200 in flight, a light real workload.
Then the time to resume a run whose N results are all stored (nothing executes).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import write_results

import flowkit as fk


class Small(fk.AsyncParallelBatchNode):
    max_concurrency = 200

    def __init__(self, io: float, **options: Any) -> None:
        super().__init__(**options)
        self.io = io

    async def prep_async(self, shared):
        return range(shared["n"])

    async def exec_async(self, item: int) -> dict[str, int]:
        if self.io:
            await asyncio.sleep(self.io)
        return {"item": item, "value": item * 7 % 1000}

    async def post_async(self, shared, prep_res, exec_res):
        shared["n_results"] = len(exec_res)


def timed(runner: fk.Runner, node: fk.BaseNode, n: int) -> float:
    t0 = time.perf_counter()
    shared = {"n": n}
    runner.run(node, shared)
    assert shared["n_results"] == n
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/store.json")
    args = parser.parse_args()
    n = args.items
    out: dict[str, Any] = {"items": n, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        for label, io in (("no-op", 0.0), ("io 1ms", 0.001)):
            plain, stored, resume = [], [], []
            for k in range(args.repeats):  # interleaved, so drifts in machine load hit both
                db = Path(tmp) / f"{label.replace(' ', '_')}_{k}.db"
                plain.append(timed(fk.Runner(progress=False), Small(io), n))
                stored.append(
                    timed(fk.Runner(progress=False, store=db, run_id="bench"), Small(io), n)
                )
                resume.append(
                    timed(fk.Runner(progress=False, store=db, resume="bench"), Small(io), n)
                )
            out[label] = {
                "no_store_s": statistics.median(plain),
                "store_s": statistics.median(stored),
                "overhead": statistics.median(
                    s / p - 1 for s, p in zip(stored, plain, strict=True)
                ),
                "resume_all_stored_s": statistics.median(resume),
                "runs": {"no_store_s": plain, "store_s": stored, "resume_s": resume},
            }
    print(f"{n} small results, median of {args.repeats} interleaved runs")
    print("                           no store    store   overhead   resume (all stored)")
    for label in ("no-op", "io 1ms"):
        r = out[label]
        print(
            f"  {label:<22} {r['no_store_s']:8.2f} s {r['store_s']:7.2f} s "
            f"{r['overhead']:9.0%} {r['resume_all_stored_s']:10.2f} s"
        )
    print("targets: overhead <= 25 % on a real workload; resume of 100 000 stored < 5 s")
    write_results(args.json, out)


if __name__ == "__main__":
    main()
