"""flowkit beside the frameworks users pick instead: same workloads, same machine, one run.

Run by hand (the peers come with ``pip install -e '.[peers]'``):
``python benchmarks/peers.py [--quick] [--peers flowkit,ray] [--workloads noop,llm] [--json PATH]``.
Prints a markdown table (the one in README.md's "How it compares") and writes every figure to
JSON (default benchmarks/results/peers.json).

Workloads, each peer written its own documented way in ``benchmarks/peers/with_<peer>.py``:

noop   map 100 000 no-op items, at most 100 at once where the peer takes a limit: µs per item
       (10 000 items where a peer cannot do 100 000 within the cap)
sleep  2 000 items that await 20 ms, at most 200 in flight: achieved vs ideal throughput, and
       the peak in flight counted inside the items
cpu    200 pure-Python items of ~20 ms each: speedup over one core, on every core
rss    1 000 000 no-op items: the process's peak RSS (skipped where its no-op rate says it
       would overrun the cap)
llm    500 chat calls to the local OpenAI-compatible test server (50 ms latency, 600 rpm
       enforced over a 10 s window) under 20 in flight and 600 rpm: the server's peak in
       flight, achieved rpm, 429s, failed calls and wall time

Every cell runs in a fresh process (``peers/cell.py``) with a time cap on its work; a cell that
overruns is killed and shows "> N s". Peer start-up (Ray's cluster, Prefect's API server) is
not timed and is reported apart.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any, TextIO

from _results import write_results
from peers import PEERS
from peers.work import WORKLOADS, spin

import flowkit
from nodes.llm.testing import LLMServer, ServerConfig

HERE = Path(__file__).resolve().parent
NAMES = {
    "flowkit": "flowkit",
    "pocketflow": "PocketFlow",
    "asyncio": "asyncio",
    "langgraph": "LangGraph",
    "prefect": "Prefect",
    "ray": "Ray",
}
SETUP_CAP_S = 120.0
EXIT_GRACE_S = 30.0
CAPS_S = {"noop": 120.0, "sleep": 60.0, "cpu": 120.0, "rss": 120.0, "llm": 300.0}
NOOP_LIMIT = 100
SLEEP_S, SLEEP_LIMIT = 0.02, 200
LLM_LATENCY_MS, LLM_IN_FLIGHT, LLM_RPM, LLM_WINDOW_S = 50, 20, 600, 10
FULL = {"noop": [10_000, 100_000], "sleep": 2_000, "cpu": 200, "rss": 1_000_000, "llm": 500}
QUICK = {"noop": [2_000, 10_000], "sleep": 400, "cpu": 40, "rss": 100_000, "llm": 100}

Result = dict[str, Any]


def installed(peer: str) -> bool:
    return peer == "asyncio" or importlib.util.find_spec(peer) is not None


def peer_version(peer: str) -> str:
    return platform.python_version() if peer == "asyncio" else version(peer)


def peer_notes(peer: str) -> dict[str, str]:
    """A peer module's ``NOTES``, read from its source so its framework is not imported here."""
    tree = ast.parse((HERE / "peers" / f"with_{peer}.py").read_text())
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign):
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "NOTES" and node.value is not None:
            return dict(ast.literal_eval(node.value))
    return {}


def _pump(stream: TextIO, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.strip())
    lines.put(None)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` now, from /proc (a peer's servers may sit in own sessions)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def wait_for(lines: queue.Queue[str | None], wanted: Callable[[str], bool], timeout: float) -> str:
    """The first line that is ``wanted`` (others are skipped); "" if the output ends first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError from None
        if line is None or wanted(line):
            return line or ""


def cell(peer: str, workload: str, params: dict[str, Any], cap_s: float) -> Result:
    """Run one cell in a fresh process: its figures, or a status saying why there are none.

    The cap counts from the peer's session being ready (start-up has its own, SETUP_CAP_S).
    """
    path = [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    command = [sys.executable, "-m", "peers.cell", peer, workload, json.dumps(params)]
    with tempfile.TemporaryFile("w+") as errors:
        # A session of its own: the driver's Ctrl-C goes to the driver, which ends the cell.
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=env,
            cwd=HERE,  # not the repository root, whose flowkit would shadow PYTHONPATH's
            start_new_session=True,
        )
        assert proc.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        result: Result = {"status": "error"}
        phase, limit = "start-up", SETUP_CAP_S
        try:
            if wait_for(lines, lambda line: line == "ready", limit):
                phase, limit = "work", cap_s
                figures = wait_for(lines, lambda line: line.startswith('{"wall_s"'), limit)
                result = {"status": "ok", **json.loads(figures)} if figures else result
        except TimeoutError:
            result = {"status": "timeout", "phase": phase, "cap_s": limit}
        finally:
            tree = [proc.pid, *descendants(proc.pid)]
            with contextlib.suppress(subprocess.TimeoutExpired):  # let it stop its own children
                proc.wait(timeout=EXIT_GRACE_S if result["status"] == "ok" else 0)
            for pid in tree:  # then end whatever is left, even in sessions of their own
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
        if result["status"] == "error":
            errors.seek(0)
            result["error"] = errors.read()[-3000:]
            print(f"{peer} {workload} failed:\n{result['error']}", file=sys.stderr)
    return result


def show(peer: str, workload: str, r: Result, figure: Callable[[Result], str]) -> None:
    print(f"  {workload:<6} {peer:<11} {figure(r) if r['status'] == 'ok' else r['status']}")


def run_noop(peers: list[str], sizes: list[int], cores: int) -> dict[str, Result]:
    """The small size first; the large one where the small one's pace fits the cap."""
    small, large = sizes
    cap = CAPS_S["noop"]
    out: dict[str, Result] = {}
    for peer in peers:
        params = {"n": small, "limit": NOOP_LIMIT, "cores": cores}
        tries = [{"items": small, **cell(peer, "noop", params, cap)}]
        if tries[0]["status"] == "ok":
            if tries[0]["wall_s"] * large / small < cap:
                tries.append({"items": large, **cell(peer, "noop", {**params, "n": large}, cap)})
                if tries[-1]["status"] == "timeout":
                    tries[0]["why"] = f"{large:,} items: > {cap:.0f} s"
                elif tries[-1]["status"] != "ok":
                    tries[0]["why"] = f"{large:,} items: {tries[-1]['status']}"
            else:
                guess = tries[0]["wall_s"] * large / small
                tries[0]["why"] = f"{large:,} items would take ~{guess:.0f} s (cap {cap:.0f} s)"
        r = tries[-1] if tries[-1]["status"] == "ok" else tries[0]
        if r["status"] == "ok":
            r["us_per_item"] = r["wall_s"] / r["items"] * 1e6
        out[peer] = {**r, "tries": tries}
        show(peer, "noop", r, lambda r: f"{r['us_per_item']:.1f} µs/item ({r['items']:,} items)")
    return out


def run_sleep(peers: list[str], n: int, cores: int) -> dict[str, Result]:
    ideal_s = n / SLEEP_LIMIT * SLEEP_S
    out: dict[str, Result] = {}
    for peer in peers:
        params = {"n": n, "limit": SLEEP_LIMIT, "delay_s": SLEEP_S, "cores": cores}
        r = {"items": n, "ideal_s": ideal_s, **cell(peer, "sleep", params, CAPS_S["sleep"])}
        if r["status"] == "ok":
            r["of_ideal"] = ideal_s / r["wall_s"]
            r["peak_in_flight"] = r.pop("value")
        out[peer] = r
        show(
            peer, "sleep", r, lambda r: f"{r['of_ideal']:.0%} of ideal, peak {r['peak_in_flight']}"
        )
    return out


def calibrate() -> int:
    """A ``spin`` loop count that takes about 20 ms here."""
    loop = 100_000
    started = time.perf_counter()
    spin(loop)
    return int(loop * 0.02 / (time.perf_counter() - started))


def run_cpu(peers: list[str], n: int, cores: int) -> dict[str, Any]:
    """Speedup against one core's pace, which each cell measures just before its run."""
    loop = calibrate()
    out: dict[str, Any] = {"items": n, "loop": loop}
    for peer in peers:
        r = cell(peer, "cpu", {"n": n, "loop": loop, "cores": cores}, CAPS_S["cpu"])
        if r["status"] == "ok":
            r["speedup"] = r["one_item_s"] * n / r["wall_s"]
        out[peer] = r
        show(peer, "cpu", r, lambda r: f"{r['speedup']:.2f}x in {r['wall_s']:.2f} s")
    return out


def run_rss(peers: list[str], n: int, cores: int, noop: dict[str, Result]) -> dict[str, Result]:
    """Peak RSS for ``n`` items, skipping a peer whose no-op pace says it would overrun."""
    cap = CAPS_S["rss"]
    out: dict[str, Result] = {}
    for peer in peers:
        pace = noop.get(peer, {}).get("us_per_item")
        if noop and pace is None:
            r = {"status": "skipped", "why": "its no-op map did not finish"}
        elif pace is not None and pace * n / 1e6 > cap:
            guess = pace * n / 1e6
            r = {"status": "skipped", "why": f"~{guess:.0f} s at its no-op pace (cap {cap:.0f} s)"}
        else:
            r = {
                "items": n,
                **cell(peer, "rss", {"n": n, "limit": NOOP_LIMIT, "cores": cores}, cap),
            }
        out[peer] = r
        show(peer, "rss", r, lambda r: f"{r['peak_rss_mb']:.0f} MB peak in {r['wall_s']:.1f} s")
    return out


def run_llm(peers: list[str], calls: int, cores: int) -> dict[str, Any]:
    """Every peer against one server, its stats cleared before each."""
    config = ServerConfig(
        latency_ms=LLM_LATENCY_MS,
        rpm=LLM_RPM * LLM_WINDOW_S // 60,  # the server counts requests per window
        rpm_window_s=LLM_WINDOW_S,
        max_records=100_000,
    )
    out: dict[str, Any] = {
        "server": config.model_dump(include={"latency_ms", "rpm", "rpm_window_s"})
    }
    with LLMServer(config) as server:
        for peer in peers:
            server.reset()
            params = {
                "base_url": server.base_url,
                "calls": calls,
                "max_in_flight": LLM_IN_FLIGHT,
                "rpm": LLM_RPM,
                "cores": cores,
            }
            r = cell(peer, "llm", params, CAPS_S["llm"])
            stats = server.wait_for(lambda s: s.in_flight == 0, timeout=60)
            starts = sorted(q.start_monotonic for q in stats.requests if q.status == 200)
            span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
            r |= {
                "calls": calls,
                "answered": len(starts),
                "status_counts": stats.status_counts,
                "server_peak_in_flight": stats.peak_in_flight,
                "rate_limited": stats.status_counts.get(429, 0),
                "achieved_rpm": (len(starts) - 1) / span * 60 if span else None,
            }
            if r["status"] == "ok":
                r["failed"] = r.pop("value")
            out[peer] = r
            show(peer, "llm", r, llm_figures)
    return out


def llm_figures(r: Result) -> str:
    return (
        f"{r['wall_s']:.1f} s, {r['achieved_rpm']:.0f} rpm, peak {r['server_peak_in_flight']}, "
        f"{r['rate_limited']} 429s, {r['failed']} failed"
    )


def per_item(us: float) -> str:
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def fmt(r: Result, text: Callable[[Result], str]) -> str:
    """A cell's text: its figure, or why there is none."""
    if r["status"] == "timeout":
        return f"> {r['cap_s']:.0f} s"
    return text(r) if r["status"] == "ok" else r["status"]


def rows(results: dict[str, Any]) -> list[tuple[str, str, Callable[[Result], str]]]:
    """(workload, label, cell text) for every table row of the workloads that ran."""
    w, sizes = results["workloads"], results["sizes"]
    out: list[tuple[str, str, Callable[[Result], str]]] = []
    if "noop" in w:
        large = sizes["noop"][1]
        out.append(
            (
                "noop",
                f"no-op map, {large:,} items: µs/item",
                lambda r: (
                    per_item(r["us_per_item"])
                    + ("" if r["items"] == large else f" ({r['items']:,} items)")
                ),
            )
        )
    if "sleep" in w:
        out += [
            (
                "sleep",
                f"{sizes['sleep']:,} x 20 ms awaits, limit {SLEEP_LIMIT}: % of ideal rate",
                lambda r: (
                    f"{r['of_ideal']:.0%}" if r["of_ideal"] >= 0.1 else f"{r['of_ideal']:.1%}"
                ),
            ),
            ("sleep", "… peak in flight", lambda r: str(r["peak_in_flight"])),
        ]
    if "cpu" in w:
        out.append(
            (
                "cpu",
                f"{sizes['cpu']} x 20 ms pure Python: speedup on {results['cores']} cores",
                lambda r: f"{r['speedup']:.2f}x",
            )
        )
    if "rss" in w:
        out.append(
            (
                "rss",
                f"{sizes['rss']:,} no-op items: peak RSS, MB",
                lambda r: f"{r['peak_rss_mb']:.0f}",
            )
        )
    if "llm" in w:
        out += [
            ("llm", f"LLM job, {sizes['llm']} calls: wall time, s", lambda r: f"{r['wall_s']:.1f}"),
            ("llm", f"… achieved rpm (limit {LLM_RPM})", lambda r: f"{r['achieved_rpm']:.0f}"),
            (
                "llm",
                f"… server's peak in flight (limit {LLM_IN_FLIGHT})",
                lambda r: str(r["server_peak_in_flight"]),
            ),
            ("llm", "… 429s from the server", lambda r: str(r["rate_limited"])),
            ("llm", "… failed calls", lambda r: str(r["failed"])),
        ]
    return out


def table(results: dict[str, Any], peers: list[str]) -> str:
    """The comparison as a markdown table, a column per peer, footnotes numbered below it."""
    footnotes: list[str] = []
    header = " | ".join(NAMES[p] for p in peers)
    lines = [f"| | {header} |", "|---|" + "---:|" * len(peers)]
    for workload, label, text in rows(results):
        cells = []
        for peer in peers:
            r = results["workloads"][workload].get(peer)
            if r is None:
                cells.append("not installed")
                continue
            why = [results["notes"][peer].get(workload), r.get("why")]
            note = "; ".join(filter(None, why))
            if note and label.startswith("…"):
                note = ""  # footnoted on the workload's first row
            if note and note not in footnotes:
                footnotes.append(note)
            mark = f" [{footnotes.index(note) + 1}]" if note else ""
            cells.append(fmt(r, text) + mark)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"[{i}] {text}  " for i, text in enumerate(footnotes, 1)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a try-out")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated, in order")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--json", default="benchmarks/results/peers.json")
    args = parser.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    workloads = [wl for wl in args.workloads.split(",") if wl]
    if unknown := (set(peers) - set(PEERS)) | (set(workloads) - set(WORKLOADS)):
        parser.error(f"unknown peers or workloads: {', '.join(sorted(unknown))}")
    present = [p for p in peers if installed(p)]
    if missing := [p for p in peers if p not in present]:
        print(f"not installed (pip install -e '.[peers]'): {', '.join(missing)}")
    sizes = QUICK if args.quick else FULL
    cores = len(os.sched_getaffinity(0))
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.system()} {platform.machine()}, {cores} cores",
        "cores": cores,
        "python": platform.python_version(),
        "versions": {p: peer_version(p) for p in present},
        "flowkit_from": str(Path(flowkit.__file__).parent),
        "caps_s": CAPS_S,
        "sizes": sizes,
        "notes": {p: peer_notes(p) for p in present},
        "workloads": {},
    }
    w = results["workloads"]
    started = time.perf_counter()
    if "noop" in workloads:
        w["noop"] = run_noop(present, sizes["noop"], cores)
    if "sleep" in workloads:
        w["sleep"] = run_sleep(present, sizes["sleep"], cores)
    if "cpu" in workloads:
        w["cpu"] = run_cpu(present, sizes["cpu"], cores)
    if "rss" in workloads:
        w["rss"] = run_rss(present, sizes["rss"], cores, w.get("noop", {}))
    if "llm" in workloads:
        w["llm"] = run_llm(present, sizes["llm"], cores)
    results["total_s"] = time.perf_counter() - started
    results["table"] = table(results, peers)
    print(f"\n{results['machine']}, Python {results['python']}, {results['date']}\n")
    print(results["table"])
    write_results(args.json, results)


if __name__ == "__main__":
    main()
