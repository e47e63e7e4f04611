"""LLM layer benchmark: calls against the local OpenAI-compatible server, measured from its side.

Run by hand: ``python benchmarks/llm.py [--calls N] [--auto-calls N] [--only a,f,...]
[--json PATH]``. Prints two tables and writes every figure to JSON (default
benchmarks/results/llm.json).

Fixed limits:

(a) rate-bound, the headline: 500 calls, 50 ms latency, client limit 50 in flight and
    1 200 rpm, the server enforcing 1 200 rpm over a 60 s window. Achieved start rate vs the
    limit (target >= 95 %), the server's peak in flight (never above 50), 429s (target 0).
(b) concurrency-bound: the same calls with 500 ms latency and no rate limit, so the
    50-in-flight limit is what binds; the server's peak in flight must be exactly 50.
(c) strict window: as (a), but the server counts its 1 200 rpm over a 10 s window (200 per
    10 s), which network jitter can overrun by one; any 429 is retried. (c0) is the same
    with ``margin=0``: the rpm paced exactly, as before the default 2 % margin.

Limits that find the provider's rate (``--auto-calls``, default 1 500 calls, 50-150 ms
latency). The server admits 600 requests per sliding 10 s window (3 600 rpm) and states it
in OpenAI's x-ratelimit-* headers; the client is not told:

(d) fixed ``rpm=3600`` (the true limit), ``margin=0``: paced exactly at the limit.
(e) fixed ``rpm=3600`` with the default 2 % margin.
(f) ``rpm="auto"``: paces from the headers. Target: >= 95 % of the server's rate with
    <= 1 % of requests refused.
(g) ``rpm="auto"`` against a server that sends no rate headers: only 429s and Retry-After.
(h) ``rpm="auto", max_concurrency="auto"``: the pace plus AIMD concurrency.
(i) ``rpm="auto"``; the server halves its limit (300 per 10 s) once 500 calls are answered.
    Target: the client's requests back under the new limit within 5 s.
(j) as (i) with a fixed ``rpm=3600``: side by side.
(k) ``max_concurrency="auto"`` against a server that refuses beyond 8 in flight (200 ms
    latency, Retry-After 0.2 s, no rate limit): AIMD finds the concurrency.
(l) as (i) against a server that sends no rate headers: only its 429s tell.

"Back under" (settle): from the change to the start of the last 2 s window that held more
requests (refused ones included, as the server saw them arrive) than the new rate allows,
plus one; "never" when that window is among the run's last 50 requests. "Rate": answered
starts per minute between the first and the last.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from _results import write_results

import flowkit as fk
from nodes.llm import LLMSettings, ParallelLLMNode
from nodes.llm.testing import LLMServer, RequestRecord, ServerConfig

AUTO_WINDOW = {"rpm": 600, "rpm_window_s": 10.0, "latency_ms": 50, "latency_max_ms": 150}
TRUE_RPM = 3600
SETTLE_WINDOW_S = 2.0
SETTLE_MIN_AFTER = 50
"""Settling for fewer of the run's last requests than this does not count."""


class Ask(ParallelLLMNode):
    on_error = "collect"

    async def prep_async(self, shared: dict[str, Any]) -> list[str]:
        return [f"request {n}" for n in range(shared["calls"])]

    async def exec_async(self, prompt: str) -> str:
        return await self.llm.chat(prompt, max_tokens=16)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, answers: list[Any]) -> None:
        shared["failed"] = sum(isinstance(a, fk.ErrorRecord) for a in answers)


def scenario(
    calls: int,
    server: ServerConfig,
    limit: fk.Limit,
    *,
    halve_after: int | None = None,
) -> dict[str, Any]:
    """Run ``calls`` LLM calls under ``limit`` against a server configured as ``server``;
    with ``halve_after``, the server halves its rpm once that many calls were answered."""
    changed: list[float] = []
    with LLMServer(server.model_copy(update={"max_records": calls * 4})) as local:
        settings = LLMSettings(
            provider="openai", base_url=local.base_url, api_key="bench", max_attempts=10
        )
        runner = fk.Runner(limits={"llm": limit}, progress=False)
        shared: dict[str, Any] = {"calls": calls}
        watcher = None
        if halve_after is not None:
            watcher = threading.Thread(
                target=_halve, args=(local, halve_after, changed), daemon=True
            )
            watcher.start()
        started = time.perf_counter()
        runner.run(fk.AsyncFlow(start=Ask(settings=settings)), shared)
        wall = time.perf_counter() - started
        stats = local.wait_for(lambda s: s.in_flight == 0)
        if watcher is not None:
            watcher.join(timeout=1)
    requests = [r for r in stats.requests if r.path == "/v1/chat/completions"]
    starts = sorted(r.start_monotonic for r in requests if r.status == 200)
    span = starts[-1] - starts[0]
    refused = stats.status_counts.get(429, 0)
    result: dict[str, Any] = {
        "calls": calls,
        "server": server.model_dump(
            include={
                "latency_ms",
                "latency_max_ms",
                "rpm",
                "rpm_window_s",
                "max_in_flight",
                "rate_headers",
            }
        ),
        "limit": {
            "max_concurrency": limit.max_concurrency,
            "rpm": limit.rpm,
            "margin": limit.margin,
        },
        "wall_s": wall,
        "answered": len(starts),
        "failed": shared["failed"],
        "status_counts": stats.status_counts,
        "refused_share": refused / len(requests),
        "server_peak_in_flight": stats.peak_in_flight,
        "start_rate_rpm": (len(starts) - 1) / span * 60 if span > 0 else None,
        "wall_rate_rpm": calls / wall * 60,
    }
    if server.rpm is not None:
        true_rpm = server.rpm * 60 / server.rpm_window_s
        result["server_rpm"] = true_rpm
        result["share_of_server_rate"] = result["start_rate_rpm"] / true_rpm
    if isinstance(limit.rpm, int | float):
        result["start_rate_vs_limit"] = result["start_rate_rpm"] / limit.rpm
        result["wall_rate_vs_limit"] = result["wall_rate_rpm"] / limit.rpm
    assert runner.last_run is not None
    lim = runner.last_run.limiters["llm"]
    if lim.learns:
        result["learned"] = {
            "told_rpm": lim.rpm,
            "paced_rpm": lim.paced_rpm,
            "concurrency": lim.concurrency,
            "concurrency_range": lim.concurrency_range,
            "refused_reported": lim.refused,
            "paused_s": lim.paused_s,
            "moves": lim.moves,
        }
    if changed and server.rpm is not None:
        result["halved"] = after_change(requests, changed[0], server.rpm / 2 / server.rpm_window_s)
    return result


def _halve(server: LLMServer, after: int, changed: list[float]) -> None:
    """Halve the server's rpm once ``after`` calls were answered; note when."""
    try:
        server.wait_for(lambda s: s.status_counts.get(200, 0) >= after, timeout=600)
    except TimeoutError:
        return
    rpm = server.config.rpm
    assert rpm is not None
    server.configure(rpm=rpm // 2)
    changed.append(time.monotonic())


def after_change(requests: list[RequestRecord], at: float, rate: float) -> dict[str, Any]:
    """How the client followed a limit lowered to ``rate`` (per second) at ``at``."""
    arrivals = sorted(r.start_monotonic for r in requests if r.start_monotonic >= at)
    settle = settle_time(arrivals, at, rate)
    answered = sorted(
        r.start_monotonic for r in requests if r.start_monotonic >= at and r.status == 200
    )
    later = [t for t in answered if settle is not None and t >= at + settle]
    span = later[-1] - later[0] if len(later) > 1 else 0.0
    return {
        "new_rpm": rate * 60,
        "settle_s": settle,
        "refused_after": sum(1 for r in requests if r.start_monotonic >= at and r.status == 429),
        "requests_after": len(arrivals),
        "rate_after_settle_rpm": (len(later) - 1) / span * 60 if span > 0 else None,
    }


def settle_time(arrivals: list[float], at: float, rate: float) -> float | None:
    """Seconds from ``at`` to the start of the last ``SETTLE_WINDOW_S`` window that held more
    requests than ``rate`` per second allows (plus one); 0.0 when none did. None when that
    window is among the run's last ``SETTLE_MIN_AFTER`` requests: it never got under."""
    allowed = rate * SETTLE_WINDOW_S + 1
    last = None
    end = 0
    for i, t in enumerate(arrivals):
        while end < len(arrivals) and arrivals[end] < t + SETTLE_WINDOW_S:
            end += 1
        if end - i > allowed:
            last = i
    if last is None:
        return 0.0
    if last >= len(arrivals) - SETTLE_MIN_AFTER:
        return None
    return arrivals[last] - at


def fixed_limits(calls: int, only: set[str]) -> dict[str, Any]:
    limit = fk.Limit(max_concurrency=50, rpm=1200)
    runs = {
        "a_rate_bound": lambda: scenario(calls, ServerConfig(latency_ms=50, rpm=1200), limit),
        "b_concurrency_bound": lambda: scenario(
            calls, ServerConfig(latency_ms=500), fk.Limit(max_concurrency=50)
        ),
        "c0_strict_window_no_margin": lambda: scenario(
            calls,
            ServerConfig(latency_ms=50, rpm=200, rpm_window_s=10),
            fk.Limit(max_concurrency=50, rpm=1200, margin=0),
        ),
        "c_strict_window": lambda: scenario(
            calls, ServerConfig(latency_ms=50, rpm=200, rpm_window_s=10), limit
        ),
    }
    return {name: run() for name, run in runs.items() if _wanted(name, only)}


def auto_limits(calls: int, only: set[str]) -> dict[str, Any]:
    window = ServerConfig(**AUTO_WINDOW)
    quiet = window.model_copy(update={"rate_headers": False})
    halve = calls // 3
    runs = {
        "d_fixed_exact": lambda: scenario(calls, window, fk.Limit(rpm=TRUE_RPM, margin=0)),
        "e_fixed_margin": lambda: scenario(calls, window, fk.Limit(rpm=TRUE_RPM)),
        "f_auto": lambda: scenario(calls, window, fk.Limit(rpm="auto")),
        "g_auto_no_headers": lambda: scenario(calls, quiet, fk.Limit(rpm="auto")),
        "h_auto_concurrency": lambda: scenario(
            calls, window, fk.Limit(rpm="auto", max_concurrency="auto")
        ),
        "i_halved_auto": lambda: scenario(calls, window, fk.Limit(rpm="auto"), halve_after=halve),
        "j_halved_fixed": lambda: scenario(
            calls, window, fk.Limit(rpm=TRUE_RPM), halve_after=halve
        ),
        "l_halved_no_headers": lambda: scenario(
            calls, quiet, fk.Limit(rpm="auto"), halve_after=halve
        ),
        "k_hidden_concurrency": lambda: scenario(
            calls // 3,
            ServerConfig(latency_ms=200, max_in_flight=8, retry_after_s=0.2),
            fk.Limit(max_concurrency="auto"),
        ),
    }
    return {name: run() for name, run in runs.items() if _wanted(name, only)}


def _wanted(name: str, only: set[str]) -> bool:
    return not only or name.split("_")[0] in only


def _pct(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def print_fixed(runs: dict[str, Any]) -> None:
    print(
        f"{'scenario':<28} {'wall s':>7} {'starts/min':>10} {'vs limit':>8} "
        f"{'peak':>5} {'429s':>5} {'failed':>6}"
    )
    for name, r in runs.items():
        print(
            f"{name:<28} {r['wall_s']:>7.2f} {r['start_rate_rpm']:>10.0f} "
            f"{_pct(r.get('start_rate_vs_limit')):>8} {r['server_peak_in_flight']:>5} "
            f"{r['status_counts'].get(429, 0):>5} {r['failed']:>6}"
        )


def print_auto(runs: dict[str, Any]) -> None:
    print(
        f"\n{'scenario':<22} {'wall s':>6} {'rate/min':>8} {'of server':>9} {'429s':>5} "
        f"{'refused':>7} {'failed':>6} {'peak':>4} {'learned':>22} {'settle s':>8} "
        f"{'429s after':>10} {'rate after':>10}"
    )
    for name, r in runs.items():
        learned = r.get("learned") or {}
        told = learned.get("told_rpm")
        paced = learned.get("paced_rpm")
        bits = []
        if told or paced:
            said = f"{told:,.0f}" if told else "?"
            bits.append(f"{said}->{paced:,.0f} rpm" if paced else f"{said} rpm")
        if learned.get("concurrency") is not None:
            lo, hi = learned["concurrency_range"]
            bits.append(f"c {learned['concurrency']} ({lo}-{hi})")
        halved = r.get("halved") or {}
        settle = halved.get("settle_s")
        after = halved.get("rate_after_settle_rpm")
        settled = "-" if not halved else "never" if settle is None else f"{settle:.2f}"
        followed = f"{after:.0f}/{halved['new_rpm']:.0f}" if after else "-"
        print(
            f"{name:<22} {r['wall_s']:>6.1f} {r['start_rate_rpm']:>8.0f} "
            f"{_pct(r.get('share_of_server_rate')):>9} {r['status_counts'].get(429, 0):>5} "
            f"{_pct(r['refused_share']):>7} {r['failed']:>6} {r['server_peak_in_flight']:>4} "
            f"{', '.join(bits) or '-':>22} {settled:>8} "
            f"{halved.get('refused_after', '-'):>10} {followed:>10}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--auto-calls", type=int, default=1500)
    parser.add_argument(
        "--only", default="", help="scenario letters to run, comma-separated (default: all)"
    )
    parser.add_argument("--json", default="benchmarks/results/llm.json")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    fixed = fixed_limits(args.calls, only)
    auto = auto_limits(args.auto_calls, only)
    if fixed:
        print_fixed(fixed)
    if auto:
        print_auto(auto)
    write_results(args.json, {"python": sys.version.split()[0], **fixed, **auto})


if __name__ == "__main__":
    main()
