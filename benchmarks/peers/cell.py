"""Run one workload of one peer in this process; report its figures as JSON on stdout.

``python -m peers.cell PEER WORKLOAD PARAMS_JSON`` with benchmarks/ on PYTHONPATH, as
``peers.py`` starts it: a fresh process per cell gives each its own peak RSS and lets a cell
that overruns its cap be killed. It prints ``ready`` once the peer's session has started,
then one JSON line of results.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from typing import Any

from .work import WORKLOADS, Peer, spin


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM) in MB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def one_core_pace(loop: int, items: int = 10) -> float:
    """Seconds per ``spin(loop)`` on one core of this process, just before the timed run."""
    started = time.perf_counter()
    for _ in range(items):
        spin(loop)
    return (time.perf_counter() - started) / items


def work(peer: Peer, workload: str, p: dict[str, Any]) -> int | None:
    """Run ``workload`` with params ``p``; the figure it yields (a peak, a failure count)."""
    if workload in ("noop", "rss"):
        done = peer.noop_map(p["n"], p["limit"])
        if done != p["n"]:
            raise AssertionError(f"{done} results for {p['n']} items")
        return None
    if workload == "sleep":
        return peer.sleep_map(p["n"], p["limit"], p["delay_s"])
    if workload == "cpu":
        results = peer.cpu_map(p["n"], p["loop"], p["cores"])
        if results != [spin(p["loop"])] * p["n"]:
            raise AssertionError("wrong results from cpu_map")
        return None
    if workload == "llm":
        return peer.llm_calls(p["base_url"], p["calls"], p["max_in_flight"], p["rpm"])
    raise ValueError(f"unknown workload {workload!r}; one of {WORKLOADS}")


def run(name: str, workload: str, params: dict[str, Any], ready: bool = False) -> dict[str, Any]:
    """Start peer ``name``'s session, time ``workload`` in it, and return the figures."""
    started = time.perf_counter()
    peer: Peer = importlib.import_module(f"peers.with_{name}")  # type: ignore[assignment]
    with peer.session(params["cores"]):
        setup_s = time.perf_counter() - started
        baseline_mb = peak_rss_mb()
        extra = {"one_item_s": one_core_pace(params["loop"])} if workload == "cpu" else {}
        if ready:
            print("ready", flush=True)
        started = time.perf_counter()
        value = work(peer, workload, params)
        wall_s = time.perf_counter() - started
        peak_mb = peak_rss_mb()
    return {
        "wall_s": wall_s,
        "setup_s": setup_s,
        "value": value,
        "baseline_rss_mb": baseline_mb,
        "peak_rss_mb": peak_mb,
        **extra,
    }


def main() -> None:
    name, workload, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    print(json.dumps(run(name, workload, params, ready=True)), flush=True)


if __name__ == "__main__":
    main()
