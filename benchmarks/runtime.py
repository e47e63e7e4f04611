"""What the runtime features cost per item: timeouts, budgets, streaming, post_item, cache.

Run by hand: ``python benchmarks/runtime.py [--items N] [--repeats R] [--json PATH]``. Prints
a table and writes JSON (default benchmarks/results/runtime.json). One node, N items whose
exec returns at once (so each figure is the runner's bookkeeping per item, the worst case
for any feature), 200 in flight, on the event loop. Each variant runs R times, all variants
taking turns so drifts in machine load hit every one; a figure is the median, and its cost is
the median of the per-round differences to the plain run, in microseconds per item.

Variants: ``plain``; ``timeout`` (``timeout = 30`` on the node: every try is wrapped in a
deadline); ``limiter`` (the node ``uses`` a named limiter with no cap: the baseline for
budgets); ``budget`` (the same limiter with ``Limit(max_calls=...)`` never reached);
``post_item`` (``post_item_async`` per item); ``stream`` (``runner.stream`` consumed);
``cache miss`` (``cache = True``, empty cache file: every result written) and ``cache hit``
(the same items again: every result read, nothing executed).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _results import write_results

import flowkit as fk


class Double(fk.AsyncParallelBatchNode):
    max_concurrency = 200

    async def prep_async(self, shared):
        return range(shared["n"])

    async def exec_async(self, item: int) -> int:
        return item * 2

    async def post_async(self, shared, prep_res, exec_res):
        shared["done"] = len(exec_res)


class WithTimeout(Double):
    timeout = 30.0


class UsesLimiter(Double):
    uses = ("llm",)


class PostItem(Double):
    async def post_item_async(self, shared, item, result):
        shared["landed"] = shared.get("landed", 0) + 1


class Cached(Double):
    cache = True


def run(runner: fk.Runner, node: fk.BaseNode, n: int, stream: bool = False) -> float:
    shared: dict[str, Any] = {"n": n}
    t0 = time.perf_counter()
    if stream:

        async def consume() -> int:
            return sum([1 async for _ in runner.stream(node, shared)])

        assert asyncio.run(consume()) == n
    else:
        runner.run(node, shared)
    elapsed = time.perf_counter() - t0
    assert shared["done"] == n
    return elapsed


def variants(tmp: Path, k: int) -> dict[str, Callable[[int], float]]:
    quiet: dict[str, Any] = {"progress": False, "detect_blocking": None}
    cache = tmp / f"cache_{k}.db"
    return {
        "plain": lambda n: run(fk.Runner(**quiet), Double(), n),
        "timeout": lambda n: run(fk.Runner(**quiet), WithTimeout(), n),
        "limiter": lambda n: run(
            fk.Runner(**quiet, limits={"llm": fk.Limit(max_concurrency=10**6)}), UsesLimiter(), n
        ),
        "budget": lambda n: run(
            fk.Runner(**quiet, limits={"llm": fk.Limit(max_concurrency=10**6, max_calls=10**9)}),
            UsesLimiter(),
            n,
        ),
        "post_item": lambda n: run(fk.Runner(**quiet), PostItem(), n),
        "stream": lambda n: run(fk.Runner(**quiet), Double(), n, stream=True),
        "cache miss": lambda n: run(fk.Runner(**quiet, cache=cache), Cached(), n),
        "cache hit": lambda n: run(fk.Runner(**quiet, cache=cache), Cached(), n),
    }


BASELINE = {"budget": "limiter"}  # compared with the limiter alone; the rest with plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/runtime.json")
    args = parser.parse_args()
    n = args.items
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            for name, fn in variants(Path(tmp), k).items():  # the hit runs after its miss
                times.setdefault(name, []).append(fn(n))
    rows = {}
    print(f"{n:,} items, exec returns at once, 200 in flight; median of {args.repeats} rounds")
    print(f"  {'variant':<12} {'wall s':>8} {'us/item':>8} {'cost us/item':>13}")
    for name, walls in times.items():
        base = times[BASELINE.get(name, "plain")]
        cost = statistics.median((w - b) / n * 1e6 for w, b in zip(walls, base, strict=True))
        wall = statistics.median(walls)
        rows[name] = {
            "wall_s": wall,
            "us_per_item": wall / n * 1e6,
            "cost_us_per_item": cost,
            "compared_with": BASELINE.get(name, "plain"),
            "runs_s": walls,
        }
        shown = "" if name == "plain" else f"{cost:+13.2f}"
        print(f"  {name:<12} {wall:8.3f} {wall / n * 1e6:8.2f} {shown:>13}")
    print("cost: against plain; budget's against the limiter alone")
    write_results(args.json, {"items": n, "repeats": args.repeats, "variants": rows})


if __name__ == "__main__":
    main()
