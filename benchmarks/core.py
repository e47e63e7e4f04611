"""Core runtime benchmarks: per-item overhead, throughput under a limit, memory, executors.

Run by hand: ``python benchmarks/core.py [--quick] [--skip-ray] [--json PATH]``. Prints one
table per part and writes every figure to JSON (default benchmarks/results/core.json).

(a) 100 000 no-op items, max_concurrency=100: flowkit vs asyncio+Semaphore vs pocketflow.
(b) 2 000 items sleeping 20 ms, limit 200: achieved vs ideal throughput.
(c) peak RSS for 1 000 000 no-op items (each measured in a fresh process).
(d) pure-Python exec of ~20 ms x 200 items: sequential, threads, processes, Ray.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pocketflow as pf
from _results import write_results

import flowkit as fk
from flowkit.executors import cpu_count


class FkNoop(fk.AsyncParallelBatchNode):
    max_concurrency = 100

    async def prep_async(self, shared):
        return range(shared["n"])

    async def exec_async(self, item):
        return item


class PfNoop(pf.AsyncParallelBatchNode):
    async def prep_async(self, shared):
        return range(shared["n"])

    async def exec_async(self, item):
        return item


async def raw_semaphore(n: int) -> list[int]:
    sem = asyncio.Semaphore(100)

    async def one(x: int) -> int:
        async with sem:
            return x

    return await asyncio.gather(*(one(x) for x in range(n)))


def best_of(repeats: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def part_a(n: int, repeats: int) -> dict[str, Any]:
    times = {
        "flowkit": best_of(repeats, lambda: fk.Runner(progress=False).run(FkNoop(), {"n": n})),
        "asyncio+semaphore": best_of(repeats, lambda: asyncio.run(raw_semaphore(n))),
        "pocketflow": best_of(repeats, lambda: asyncio.run(PfNoop().run_async({"n": n}))),
    }
    per_item = {k: v / n * 1e6 for k, v in times.items()}
    return {
        "items": n,
        "us_per_item": per_item,
        "speedup_vs_pocketflow": per_item["pocketflow"] / per_item["flowkit"],
    }


class Sleeper(fk.AsyncParallelBatchNode):
    max_concurrency = 200

    async def prep_async(self, shared):
        return range(shared["n"])

    async def exec_async(self, item):
        await asyncio.sleep(0.02)


def part_b(n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    fk.Runner(progress=False).run(Sleeper(), {"n": n})
    wall = time.perf_counter() - t0
    ideal = n / 200 * 0.02
    return {"items": n, "wall_s": wall, "ideal_s": ideal, "efficiency": ideal / wall}


PEAK_RSS = "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"
RSS_CHILD = """
import asyncio, sys
sys.path.insert(0, {here!r})
from core import FkNoop, PfNoop
import flowkit as fk
n = {n}
if {which!r} == "flowkit":
    fk.Runner(progress=False).run(FkNoop(max_concurrency=100), {{"n": n}})
else:
    asyncio.run(PfNoop().run_async({{"n": n}}))
"""


def part_c(n: int) -> dict[str, Any]:
    here = str(Path(__file__).parent)
    out: dict[str, Any] = {"items": n}
    for which in ("baseline", "flowkit", "pocketflow"):
        code = "import flowkit, pocketflow\n"
        if which != "baseline":
            code = RSS_CHILD.format(here=here, n=n, which=which)
        code += PEAK_RSS  # VmHWM: ru_maxrss would include the parent's pages from before exec
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        out[f"{which}_peak_rss_mb"] = int(res.stdout.split()[-1]) / 1024
    return out


class CpuNode(fk.BatchNode):
    def __init__(self, loop: int, **options: Any) -> None:
        super().__init__(**options)
        self.loop = loop

    def prep(self, shared):
        return range(shared["n"])

    def exec(self, item):
        total = 0
        for i in range(self.loop):
            total += i * i % 7
        return total


def part_d(n: int, with_ray: bool) -> dict[str, Any]:
    loop = 100_000
    t0 = time.perf_counter()
    CpuNode(loop).exec(0)
    loop = int(loop * 0.02 / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    CpuNode(loop).exec(0)
    per_call = time.perf_counter() - t0
    times: dict[str, float] = {}
    runner = fk.Runner(progress=False)
    for executor in (None, "thread", "process", *(["ray"] if with_ray else [])):
        if executor == "ray":
            runner.run(CpuNode(loop, executor="ray"), {"n": 2})  # start the cluster first
        node = CpuNode(loop, executor=executor) if executor else CpuNode(loop)
        t0 = time.perf_counter()
        runner.run(node, {"n": n})
        times[executor or "sequential"] = time.perf_counter() - t0
    seq = times["sequential"]
    return {
        "items": n,
        "ms_per_call": per_call * 1000,
        "cores": cpu_count(),
        "wall_s": times,
        "speedup": {k: seq / v for k, v in times.items()},
        "process_speedup_per_core": seq / times["process"] / cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--json", default="benchmarks/results/core.json")
    args = parser.parse_args()
    q = args.quick
    results: dict[str, Any] = {"cores": cpu_count(), "python": sys.version.split()[0]}

    a = results["a_overhead"] = part_a(20_000 if q else 100_000, 2 if q else 5)
    print("(a) per-item overhead, 100k no-op items, limit 100")
    for k, v in a["us_per_item"].items():
        print(f"    {k:<20} {v:7.2f} us/item")
    print(
        f"    flowkit vs pocketflow: {a['speedup_vs_pocketflow']:.1f}x faster"
        "  (target <= 2 us, >= 5x)"
    )

    b = results["b_throughput"] = part_b(400 if q else 2_000)
    print(
        f"(b) {b['items']} x 20 ms sleeps, limit 200: wall {b['wall_s']:.3f} s, ideal "
        f"{b['ideal_s']:.3f} s, {b['efficiency']:.1%} of ideal  (target >= 90 %)"
    )

    c = results["c_memory"] = part_c(100_000 if q else 1_000_000)
    print(
        f"(c) peak RSS, {c['items']} no-op items: flowkit {c['flowkit_peak_rss_mb']:.0f} MB, "
        f"pocketflow {c['pocketflow_peak_rss_mb']:.0f} MB, interpreter+imports "
        f"{c['baseline_peak_rss_mb']:.0f} MB  (target flowkit <= 100 MB)"
    )

    d = results["d_executors"] = part_d(40 if q else 200, not args.skip_ray)
    print(f"(d) {d['items']} x {d['ms_per_call']:.1f} ms pure-Python exec on {d['cores']} cores")
    for k, v in d["wall_s"].items():
        print(f"    {k:<12} {v:7.2f} s   speedup {d['speedup'][k]:.2f}x")
    print(f"    processes: {d['process_speedup_per_core']:.2f} x core count  (target >= 0.85)")

    write_results(args.json, results)


if __name__ == "__main__":
    main()
