"""Start-up cost: what ``import flowkit`` (and a few first uses) add to the interpreter's start.

Run by hand: ``python benchmarks/import_time.py [--repeats R] [--json PATH]``. Prints a table
and writes JSON (default benchmarks/results/import_time.json).

Each statement runs in a fresh interpreter R times (default 15), interleaved with
``python -c pass``. Two figures per statement, each the median over the runs:
- "importtime": the cumulative microseconds ``python -X importtime`` gives the statement's
  top-level modules (what the imports themselves cost, free of process start-up noise);
- "wall above pass": the statement's wall time minus the same round's ``python -c pass``.
Target: ``import flowkit`` within 100 ms of ``python -c pass``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _results import write_results

STATEMENTS = {
    "import flowkit": "import flowkit",
    "define nodes and a flow": (
        "from flowkit import AsyncFlow, AsyncParallelBatchNode, Limit\n"
        "class N(AsyncParallelBatchNode):\n    pass\n"
        "AsyncFlow(start=N())"
    ),
    "from flowkit import Runner": "from flowkit import Runner",
    "import pocketflow": "import pocketflow",
}
TARGET_MS = 100.0
_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")


def wall(code: str) -> float:
    """Seconds one fresh interpreter takes to run ``code``."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def importtime(code: str) -> float:
    """Microseconds ``-X importtime`` books to the top-level imports ``code`` makes."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        check=True,
        capture_output=True,
        text=True,
    )
    before = set(_baseline())
    total = 0
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if match and not match.group(2).startswith(" ") and match.group(2) not in before:
            total += int(match.group(1))
    return float(total)


_base: list[str] = []


def _baseline() -> list[str]:
    """Top-level modules the interpreter imports for ``pass`` (site, encodings...)."""
    if not _base:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "pass"],
            check=True,
            capture_output=True,
            text=True,
        )
        for line in done.stderr.splitlines():
            match = _LINE.match(line)
            if match and not match.group(2).startswith(" "):
                _base.append(match.group(2))
    return _base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--json", default=str(Path(__file__).parent / "results" / "import_time.json")
    )
    args = parser.parse_args()
    walls: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    costs: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    passes: list[float] = []
    for _ in range(args.repeats):
        base = wall("pass")
        passes.append(base)
        for name, code in STATEMENTS.items():
            walls[name].append(wall(code) - base)
            costs[name].append(importtime(code))
    rows = []
    print(f"python -c pass: median {1000 * statistics.median(passes):.1f} ms")
    print(f"{'statement':<28} {'importtime':>12} {'wall above pass':>16}")
    for name in STATEMENTS:
        cost_ms = statistics.median(costs[name]) / 1000
        above_ms = 1000 * statistics.median(walls[name])
        rows.append(
            {
                "statement": name,
                "importtime_ms": cost_ms,
                "wall_above_pass_ms": above_ms,
                "runs_wall_above_pass_ms": [1000 * w for w in walls[name]],
            }
        )
        print(f"{name:<28} {cost_ms:>9.1f} ms {above_ms:>13.1f} ms")
    flowkit_row = rows[0]
    met = flowkit_row["wall_above_pass_ms"] <= TARGET_MS
    print(
        f"target: import flowkit within {TARGET_MS:.0f} ms of python -c pass: "
        f"{'met' if met else 'NOT met'}"
    )
    write_results(
        args.json,
        {
            "python": sys.version.split()[0],
            "repeats": args.repeats,
            "pass_ms": [1000 * p for p in passes],
            "target_ms": TARGET_MS,
            "target_met": met,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
