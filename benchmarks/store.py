"""Checkpoint store benchmarks: the cost of writing every result, large results, the time and
memory of a resume.

Run by hand: ``python benchmarks/store.py [--items N] [--repeats R] [--json PATH]``. Prints
tables and writes JSON (default benchmarks/results/store.json). Each timed figure is the
median of R runs, with and without a store taking turns; the overhead is the median of the
paired ratios.

1. N small results (default 100 000), each with and without a store:
   - "no-op": exec returns at once, so the figure is pure bookkeeping per item;
   - "io 1ms": exec awaits 1 ms of simulated I/O with 200 in flight, a light real workload;
   then the time to resume a run whose N results are all stored (nothing executes).
2. Large results: 200 results of 1 MB (target: at most 2x the wall without a store) and
   3 results of 100 MB (target: stored), each checked back from the store; beside them, the
   seconds a bare process takes to write the same bytes to files (the machine's own cost).
   Each round's stored files are removed after the check, unless ``--keep-files``.
3. Resume memory (``--memory-items``, default 1 000 000 small results): the peak resident
   memory of a fresh run and of resuming it with everything stored, each in its own process
   (target: the resume's peak follows the limit, not the run's size: no more than the fresh
   run's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from _results import write_results

import flowkit as fk
from flowkit.store import Store


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


class Large(fk.AsyncParallelBatchNode):
    """Returns ``size`` bytes of text per item, made fresh for each item."""

    max_concurrency = 8

    def __init__(self, size: int, **options: Any) -> None:
        super().__init__(**options)
        self.size = size

    async def prep_async(self, shared):
        return range(shared["n"])

    async def exec_async(self, item: int) -> str:
        unit = f"{item:08d}"
        return unit * (self.size // len(unit))

    async def post_async(self, shared, prep_res, exec_res):
        shared["n_results"] = len(exec_res)


def timed(runner: fk.Runner, node: fk.BaseNode, n: int) -> float:
    t0 = time.perf_counter()
    shared = {"n": n}
    runner.run(node, shared)
    assert shared["n_results"] == n
    return time.perf_counter() - t0


def small(n: int, repeats: int, tmp: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, io in (("no-op", 0.0), ("io 1ms", 0.001)):
        plain, stored, resume = [], [], []
        for k in range(repeats):  # interleaved, so drifts in machine load hit both
            db = Path(tmp) / f"{label.replace(' ', '_')}_{k}.db"
            plain.append(timed(fk.Runner(progress=False), Small(io), n))
            stored.append(timed(fk.Runner(progress=False, store=db, run_id="bench"), Small(io), n))
            resume.append(timed(fk.Runner(progress=False, store=db, resume="bench"), Small(io), n))
        out[label] = {
            "no_store_s": statistics.median(plain),
            "store_s": statistics.median(stored),
            "overhead": statistics.median(s / p - 1 for s, p in zip(stored, plain, strict=True)),
            "resume_all_stored_s": statistics.median(resume),
            "runs": {"no_store_s": plain, "store_s": stored, "resume_s": resume},
        }
    print(f"{n} small results, median of {repeats} interleaved runs")
    print("                           no store    store   overhead   resume (all stored)")
    for label in ("no-op", "io 1ms"):
        r = out[label]
        print(
            f"  {label:<22} {r['no_store_s']:8.2f} s {r['store_s']:7.2f} s "
            f"{r['overhead']:9.0%} {r['resume_all_stored_s']:10.2f} s"
        )
    print("targets: overhead <= 25 % on a real workload; resume of 100 000 stored < 5 s")
    return out


def stored_sizes(db: Path, keep: bool, run_id: str = "big") -> list[int]:
    """The length of each result of ``run_id`` as the store gives it back (``flowkit export``
    reads the same); then, unless ``keep``, the store and its files are removed."""
    store = Store(db, readonly=True)
    try:
        sizes = [len(r.value) for r in store.results(run_id)]
    finally:
        store.close()
    if not keep:
        for path in (db, *db.parent.glob(db.name + "-*")):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return sizes


FILES_ALONE = textwrap.dedent(
    """
    import os, sys, time
    folder, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.mkdir(folder)
    spent = 0.0
    for item in range(n):
        unit = f"{item:08d}"
        text = unit * (size // len(unit))
        start = time.perf_counter()
        with open(os.path.join(folder, str(item)), "wb") as handle:
            handle.write(text.encode())
        spent += time.perf_counter() - start
    print(spent)
    """
)


def files_alone(tmp: str, n: int, size: int, k: int, keep: bool) -> float:
    """Seconds a bare Python process spends writing the same ``n`` texts to new files: what
    putting those bytes on this machine's disk costs, with no flowkit and no SQLite."""
    folder = Path(tmp) / f"files_{n}_{k}"
    args = [sys.executable, "-c", FILES_ALONE, str(folder), str(n), str(size)]
    spent = float(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    if not keep:
        shutil.rmtree(folder)
    return spent


LARGE_FLOW = textwrap.dedent(
    """
    import flowkit as fk

    class Large(fk.AsyncParallelBatchNode):
        max_concurrency = 8

        async def prep_async(self, shared):
            return range(shared["n"])

        async def exec_async(self, item: int) -> str:
            unit = f"{item:08d}"
            return unit * (shared_size // len(unit))

    shared_size = 0

    def flow(n: int, size: int) -> Large:
        global shared_size
        shared_size = size
        return Large()
    """
)


def command(tmp: str, n: int, size: int, store: str | None) -> float:
    """The wall of ``flowkit run`` storing ``n`` results of ``size`` bytes (or none)."""
    folder = Path(tmp)
    (folder / "large_flow.py").write_text(
        LARGE_FLOW + f"\nbench = lambda: flow({n}, {size})\nbench_shared = {{'n': {n}}}\n"
    )
    args = [sys.executable, "-m", "flowkit.cli", "run", "large_flow:bench", "--no-progress"]
    args += ["--shared", json.dumps({"n": n})]
    args += ["--store", store, "--run-id", "big"] if store else ["--no-store"]
    t0 = time.perf_counter()
    subprocess.run(args, cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - t0


def large(repeats: int, tmp: str, keep: bool) -> dict[str, Any]:
    """Large results, timed two ways: ``flowkit run`` as a user runs it (the target), and
    ``Runner.run`` inside this process (where the no-store wall is only the exec calls); and
    the same bytes written to files by a bare process, for the machine's own cost. With
    ``keep``, no round's files are removed until the end, so each round's land in memory the
    page cache has not used yet, as a store that keeps its runs does."""
    out: dict[str, Any] = {}
    for label, n, size, reps in (
        ("200 x 1 MB", 200, 1 << 20, repeats),
        ("3 x 100 MB", 3, 100 << 20, 1),
    ):
        plain, stored, cmd_plain, cmd_stored, bare = [], [], [], [], []
        for k in range(reps):
            db = Path(tmp) / f"large_{n}_{k}.db"
            cmd_plain.append(command(tmp, n, size, None))
            cmd_stored.append(command(tmp, n, size, str(db)))
            sizes = stored_sizes(db, keep)
            assert len(sizes) == n and min(sizes) >= size, (len(sizes), min(sizes, default=0))
            bare.append(files_alone(tmp, n, size, k, keep))
            db = db.with_suffix(".run.db")
            plain.append(timed(fk.Runner(progress=False), Large(size), n))
            stored.append(timed(fk.Runner(progress=False, store=db, run_id="big"), Large(size), n))
            sizes = stored_sizes(db, keep)
            assert len(sizes) == n and min(sizes) >= size, (len(sizes), min(sizes, default=0))
        out[label] = {
            "command_no_store_s": statistics.median(cmd_plain),
            "command_store_s": statistics.median(cmd_stored),
            "command_ratio": statistics.median(
                s / p for s, p in zip(cmd_stored, cmd_plain, strict=True)
            ),
            "run_no_store_s": statistics.median(plain),
            "run_store_s": statistics.median(stored),
            "files_alone_s": statistics.median(bare),
            "stored": n,
            "runs": {
                "command_no_store_s": cmd_plain,
                "command_store_s": cmd_stored,
                "run_no_store_s": plain,
                "run_store_s": stored,
                "files_alone_s": bare,
            },
        }
    kept = "kept" if keep else "removed"
    print(f"\nlarge results, median of {repeats} (100 MB: 1); each round's files {kept}")
    print(
        "                 flowkit run: no store    store    ratio | Runner.run: no store  store"
        " | files alone"
    )
    for label, r in out.items():
        print(
            f"  {label:<12} {r['command_no_store_s']:19.2f} s {r['command_store_s']:6.2f} s "
            f"{r['command_ratio']:6.2f}x | {r['run_no_store_s']:14.2f} s "
            f"{r['run_store_s']:6.2f} s | {r['files_alone_s']:8.2f} s   ({r['stored']} stored)"
        )
    print("targets: 200 x 1 MB stored by flowkit run in <= 2x its no-store wall; 3 x 100 MB stored")
    return out


MEMORY_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import flowkit as fk

    class Small(fk.AsyncParallelBatchNode):
        max_concurrency = 200

        async def prep_async(self, shared):
            return range(shared["n"])

        async def exec_async(self, item: int) -> dict[str, int]:
            return {"item": item, "value": item * 7 % 1000}

        async def post_async(self, shared, prep_res, exec_res):
            shared["n_results"] = len(exec_res)

    db, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    kw = {"resume": "mem"} if mode == "resume" else {"run_id": "mem"}
    runner = fk.Runner(progress=False, store=db, **kw)
    shared = {"n": n}
    t0 = time.perf_counter()
    runner.run(Small(), shared)
    wall = time.perf_counter() - t0
    assert shared["n_results"] == n
    # VmHWM: this program's own peak (ru_maxrss would count the parent's, kept across exec)
    try:
        status = open("/proc/self/status").read()
        peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": peak, "wall_s": wall, "resumed": runner.last_run.resumed}))
    """
)


def memory(n: int, tmp: str) -> dict[str, Any]:
    db = str(Path(tmp) / "memory.db")
    out: dict[str, Any] = {"items": n}
    for mode in ("fresh", "resume"):
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, db, str(n), mode],
            capture_output=True,
            text=True,
            check=True,
        )
        out[mode] = json.loads(done.stdout.splitlines()[-1])
    print(f"\nresume memory, {n:,} small results     peak RSS     wall   reused")
    for mode in ("fresh", "resume"):
        r = out[mode]
        print(
            f"  {mode + ' run':<32} {r['peak_rss_mb']:7.0f} MB {r['wall_s']:6.1f} s "
            f"{r['resumed']:8,}"
        )
    print("target: the resume's peak is no more than the fresh run's")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--memory-items", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--only", choices=("small", "large", "memory"), help="run one part of the benchmark"
    )
    parser.add_argument(
        "--keep-files",
        action="store_true",
        help="large results: keep every round's stored files until the end",
    )
    parser.add_argument("--json", default="benchmarks/results/store.json")
    args = parser.parse_args()
    out: dict[str, Any] = {"items": args.items, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "small"):
            out |= small(args.items, args.repeats, tmp)
        if args.only in (None, "large"):
            out["large"] = large(args.repeats, tmp, args.keep_files)
        if args.only in (None, "memory"):
            out["resume_memory"] = memory(args.memory_items, tmp)
    out["peak_rss_mb_of_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_results(args.json, out)


if __name__ == "__main__":
    main()
