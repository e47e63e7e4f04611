"""Core runtime benchmarks: per-item overhead, throughput under a limit, memory, executors.

Run by hand: ``python benchmarks/core.py [--quick] [--skip-ray] [--json PATH]
[--compare DIR] [--rounds N] [--parts a,b,c,d,e,f]``. Prints one table per part and writes
every figure to JSON (default benchmarks/results/core.json).

(a) 100 000 no-op items, max_concurrency=100: flowkit vs asyncio+Semaphore vs pocketflow.
(b) 2 000 items sleeping 20 ms, limit 200: achieved vs ideal throughput, on asyncio's
    default loop and on uvloop (when installed).
(c) peak RSS for 1 000 000 no-op items.
(d) pure-Python exec of ~20 ms x 200 items: sequential, threads, processes, Ray.
(e) OpenTelemetry export (the ``otel`` extra) of 100 000 no-op items to a local OTLP/HTTP
    sink in another process: per-item cost with export off, with spans for the run, flows and
    nodes only (``item_spans=0``), at the default level (those, plus the first 1 000 exec
    calls of each node), and with a span for every call (``item_spans=None``, on 10 000
    items); spans exported and dropped.
(f) peak RSS for 1 000 000 no-op items with export on at the default level (compare (c)).
Parts (e) and (f) measure this tree only.

Every measurement runs in a fresh interpreter. ``--compare DIR`` measures the flowkit tree at
DIR too (e.g. a checkout of an earlier commit), alternating the two trees round by round, so
both see the same machine load; each figure is the best of ``--rounds`` (default 3).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from _results import write_results

HERE = Path(__file__).resolve().parent
TREE = HERE.parent

CHILD = r"""
import asyncio, json, sys, time
part, n = sys.argv[1], int(sys.argv[2])
import flowkit as fk

class Noop(fk.AsyncParallelBatchNode):
    max_concurrency = 100
    async def prep_async(self, shared):
        return range(shared["n"])
    async def exec_async(self, item):
        return item

class Sleeper(fk.AsyncParallelBatchNode):
    max_concurrency = 200
    async def prep_async(self, shared):
        return range(shared["n"])
    async def exec_async(self, item):
        await asyncio.sleep(0.02)

class Cpu(fk.BatchNode):
    def __init__(self, loop, **options):
        super().__init__(**options)
        self.loop = loop
    def prep(self, shared):
        return range(shared["n"])
    def exec(self, item):
        total = 0
        for i in range(self.loop):
            total += i * i % 7
        return total

def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0

out = {}
if part == "a":
    import pocketflow as pf
    class PfNoop(pf.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return range(shared["n"])
        async def exec_async(self, item):
            return item
    async def sem(n):
        s = asyncio.Semaphore(100)
        async def one(x):
            async with s:
                return x
        return await asyncio.gather(*(one(x) for x in range(n)))
    runner = fk.Runner(progress=False)
    runner.run(Noop(), {"n": 1000})  # warm up: imports and first-use costs
    out["flowkit"] = min(timed(lambda: runner.run(Noop(), {"n": n})) for _ in range(3)) / n
    out["asyncio+semaphore"] = min(timed(lambda: asyncio.run(sem(n))) for _ in range(3)) / n
    out["pocketflow"] = min(
        timed(lambda: asyncio.run(PfNoop().run_async({"n": n}))) for _ in range(3)
    ) / n
elif part in ("b", "b-uvloop"):
    if part == "b-uvloop":
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    runner = fk.Runner(progress=False)
    runner.run(Sleeper(), {"n": 200})  # warm up
    out["wall_s"] = min(timed(lambda: runner.run(Sleeper(), {"n": n})) for _ in range(3))
elif part == "c":
    fk.Runner(progress=False).run(Noop(), {"n": n})
    out["peak_rss_mb"] = next(
        int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")
    ) / 1024
elif part in ("e", "f"):
    from flowkit.otel import OtelExport
    url = sys.argv[3]
    LEVELS = {"nodes only": {"item_spans": 0}, "default": {}, "every call": {"item_spans": None}}
    STATS = ("spans", "exported", "dropped", "failed", "unsent")
    def runner(level, export=None):
        if level == "off":
            return fk.Runner(progress=False)
        return fk.Runner(progress=False, otel=export or OtelExport(endpoint=url, **LEVELS[level]))
    if part == "e":
        for level in ("off", *LEVELS):
            m = n // 10 if level == "every call" else n
            runner(level).run(Noop(), {"n": 1000})  # warm up
            out[level] = min(timed(lambda: runner(level).run(Noop(), {"n": m})) for _ in range(3))
            out[level] /= m
            if level != "off":
                export = OtelExport(endpoint=url, **LEVELS[level])
                runner(level, export).run(Noop(), {"n": m})
                out[level + " spans"] = {k: getattr(export.last, k) for k in STATS}
    else:
        export = OtelExport(endpoint=url)
        runner("default", export).run(Noop(), {"n": n})
        out["peak_rss_mb"] = next(
            int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")
        ) / 1024
        out["spans"] = export.last.spans
        out["exported"] = export.last.exported
elif part == "d":
    from flowkit.executors import cpu_count
    loop = 100_000
    per = timed(lambda: Cpu(loop).exec(0))
    loop = int(loop * 0.02 / per)
    out["ms_per_call"] = timed(lambda: Cpu(loop).exec(0)) * 1000
    runner = fk.Runner(progress=False)
    executors = [None, "thread", "process"] + (["ray"] if sys.argv[3] == "ray" else [])
    for executor in executors:
        if executor == "ray":
            runner.run(Cpu(loop, executor="ray"), {"n": 2})  # start the cluster first
        node = Cpu(loop, executor=executor) if executor else Cpu(loop)
        out[executor or "sequential"] = timed(lambda: runner.run(node, {"n": n}))
    out["cores"] = cpu_count()
print(json.dumps(out))
"""


SINK = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_port, flush=True)
server.serve_forever()
"""


def start_sink() -> tuple[subprocess.Popen[str], str]:
    """An OTLP/HTTP sink in its own process: it takes every post and answers 200."""
    proc = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, f"http://127.0.0.1:{proc.stdout.readline().strip()}"


def measure(tree: Path, part: str, n: int, extra: str = "") -> dict[str, Any]:
    """One part, in a fresh interpreter importing flowkit from ``tree``."""
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    # The runner picks uvloop itself when installed: "b" must measure asyncio's own loop.
    env["FLOWKIT_UVLOOP"] = "1" if part == "b-uvloop" else "0" if part == "b" else "1"
    res = subprocess.run(
        [sys.executable, "-c", CHILD, part, str(n), extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
    )
    if res.returncode:
        raise SystemExit(f"part {part} failed on {tree}:\n{res.stderr[-2000:]}")
    return dict(json.loads(res.stdout.splitlines()[-1]))


def best(rounds: list[dict[str, Any]], key: str, *, high: bool = False) -> float:
    values = [r[key] for r in rounds]
    return max(values) if high else min(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one round")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--compare", metavar="DIR", help="also measure the flowkit tree at DIR")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/core.json")
    parser.add_argument("--parts", default="a,b,c,d,e,f", help="which parts to run")
    args = parser.parse_args()
    q = args.quick
    rounds = 1 if q else args.rounds
    trees = {"this tree": TREE}
    if args.compare:
        trees["compared"] = Path(args.compare).resolve()
    try:
        import uvloop  # noqa: F401

        loops = ["b", "b-uvloop"]
    except ImportError:
        loops = ["b"]
    sizes = {
        "a": 20_000 if q else 100_000,
        "b": 400 if q else 2_000,
        "c": 100_000 if q else 1_000_000,
        "d": 40 if q else 200,
        "e": 20_000 if q else 100_000,
        "f": 100_000 if q else 1_000_000,
    }
    wanted = set(args.parts.split(","))
    parts = [p for p in ["a", *loops, "c", "d", "e", "f"] if p[0] in wanted]
    sink, url = start_sink() if wanted & {"e", "f"} else (None, "")
    got: dict[str, dict[str, list[dict[str, Any]]]] = {t: {p: [] for p in parts} for t in trees}
    try:
        for r in range(rounds):
            for part in parts:
                for name, tree in trees.items():  # alternate: both trees see the same load
                    if part in ("e", "f") and name != "this tree":
                        continue
                    extra = url if part in ("e", "f") else ""
                    if part == "d" and not args.skip_ray:
                        extra = "ray"
                    got[name][part].append(measure(tree, part, sizes[part[0]], extra))
            print(f"round {r + 1} of {rounds} done", file=sys.stderr)
    finally:
        if sink is not None:
            sink.kill()
            sink.wait()

    results: dict[str, Any] = {"python": sys.version.split()[0], "sizes": sizes, "trees": {}}
    for name, tree in trees.items():
        g = {part: rounds_ for part, rounds_ in got[name].items() if rounds_}
        tree_out: dict[str, Any] = {"path": str(tree)}
        results["trees"][name] = tree_out
        print(f"== {name}: {tree}")
        if "a" in g:
            a = tree_out["a_us_per_item"] = {k: best(g["a"], k) * 1e6 for k in g["a"][0]}
            print(
                "(a) per-item overhead, no-op items, limit 100: "
                + ", ".join(f"{k} {v:.2f} us" for k, v in a.items())
            )
        if "b" in g:
            ideal = sizes["b"] / 200 * 0.02
            tree_out["b_efficiency"] = {p: ideal / best(g[p], "wall_s") for p in loops}
            print(
                "(b) 20 ms sleeps, limit 200, share of the ideal rate: "
                + ", ".join(
                    f"{'uvloop' if p.endswith('uvloop') else 'asyncio'} {v:.1%}"
                    for p, v in tree_out["b_efficiency"].items()
                )
            )
        if "c" in g:
            tree_out["c_peak_rss_mb"] = best(g["c"], "peak_rss_mb")
            print(f"(c) peak RSS, {sizes['c']:,} no-op items: {tree_out['c_peak_rss_mb']:.0f} MB")
        if "d" in g:
            d = {k: best(g["d"], k) for k in g["d"][0] if k not in ("cores", "ms_per_call")}
            cores = g["d"][0]["cores"]
            tree_out["d_wall_s"] = d
            tree_out["d_process_speedup_per_core"] = d["sequential"] / d["process"] / cores
            print(
                f"(d) {sizes['d']} x ~20 ms pure Python on {cores} cores: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in d.items())
                + f"; processes {tree_out['d_process_speedup_per_core']:.2f} x cores"
            )
        if "e" in g:
            levels = ("off", "nodes only", "default", "every call")
            e = {k: best(g["e"], k) * 1e6 for k in levels}
            tree_out["e_us_per_item"] = e
            tree_out["e_added_us_per_item"] = {k: e[k] - e["off"] for k in levels[1:]}
            tree_out["e_spans"] = {k: g["e"][-1][k + " spans"] for k in levels[1:]}
            print(
                f"(e) OpenTelemetry export, no-op items: off {e['off']:.2f} us; run and node "
                f"spans only {e['nodes only']:.2f} us (+{e['nodes only'] - e['off']:.2f}) and "
                f"default level {e['default']:.2f} us (+{e['default'] - e['off']:.2f}) on "
                f"{sizes['e']:,} items; a span per call {e['every call']:.2f} us "
                f"(+{e['every call'] - e['off']:.2f}) on {sizes['e'] // 10:,} items"
            )
            for k, spans in tree_out["e_spans"].items():
                print(f"    {k}: " + ", ".join(f"{n} {v:,}" for n, v in spans.items()))
        if "f" in g:
            tree_out["f_peak_rss_mb"] = best(g["f"], "peak_rss_mb")
            tree_out["f_spans"] = g["f"][-1]["spans"]
            print(
                f"(f) peak RSS, {sizes['f']:,} no-op items, export on: "
                f"{tree_out['f_peak_rss_mb']:.0f} MB ({tree_out['f_spans']:,} spans)"
            )
    write_results(args.json, results)


if __name__ == "__main__":
    main()
