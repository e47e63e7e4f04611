"""Findings: why a node's work did not overlap as much as its limit allowed, in plain words
(a blocked event loop, a limiter that set the pace, too few items, a sequential node)."""

from __future__ import annotations

from collections.abc import Sequence

from flowkit.limits import LimiterStats
from flowkit.report.model import NodeReport

UNDERUSE = 0.5
"""A node whose mean in-flight stays below this share of its limit gets a finding."""
LIMITER_SHARE = 0.1
"""Limiter waits above this share of a node's exec time are named as a cause."""
POOLS = {"process": "worker processes", "ray": "Ray workers", "thread": "threads"}
"""What a node's limit counts when it runs on a pool (its executor's size by default)."""
BOUND_SHARE = 0.5
"""A limiter whose slots were all taken this share of its active time bounded its users."""


def bound_by(node: NodeReport, lim: LimiterStats) -> str | None:
    """How ``lim`` held ``node`` back, in words, or None when it did not."""
    waited = node.limiter_wait.get(lim.name, 0.0)
    if waited <= LIMITER_SHARE * max(node.exec_time, 1e-9) or waited <= 0:
        return None
    tail = f"; items waited {waited:.2f} s in all"
    if lim.max_concurrency and lim.full_share >= BOUND_SHARE:
        return (
            f"bounded by limiter {lim.name!r}: {lim.max_concurrency} of {lim.max_concurrency} "
            f"busy {100 * lim.full_share:.0f} % of the time" + tail
        )
    if lim.rpm and lim.achieved_rpm is not None and lim.achieved_rpm >= 0.8 * lim.rpm:
        return (
            f"paced by limiter {lim.name!r}: {lim.achieved_rpm:,.0f} calls/min of its "
            f"{lim.rpm:g} rpm" + tail
        )
    if lim.tpm and lim.achieved_tpm is not None and lim.achieved_tpm >= 0.8 * lim.tpm:
        return (
            f"paced by limiter {lim.name!r}: {lim.achieved_tpm:,.0f} tokens/min of its "
            f"{lim.tpm:g} tpm" + tail
        )
    return f"waited on limiter {lim.name!r}" + tail


TIMED_OUT = {
    "async": "each was cancelled",
    "thread": "each was abandoned in its thread, which stayed busy until it returned",
    "process": "each stopped its worker process, which was killed and replaced",
}


def findings(node: NodeReport, limiters: Sequence[LimiterStats] = ()) -> list[str]:
    """Why a node's work did not overlap as much as it could, in plain words."""
    out: list[str] = []
    if node.timeouts:
        many = node.timeouts != 1
        out.append(
            f"{node.timeouts:,} tr{'ies' if many else 'y'} ran past the node's timeout of "
            f"{node.timeout or 0:g} s ({TIMED_OUT.get(node.executor, 'each was stopped')}) and "
            f"counted as failure{'s' if many else ''} under its retry policy: find what hangs, "
            "or raise the timeout"
        )
    if node.loop_blocked > 0:
        out.append(
            f"blocked the event loop for {node.loop_blocked:.2f} s, so nothing else ran "
            'meanwhile: run its exec with executor="thread" (blocking I/O) or '
            'executor="process" (CPU-bound work)'
        )
    bounds = [text for lim in limiters if (text := bound_by(node, lim)) is not None]
    pool = POOLS.get(node.executor)
    queued = node.wait_time > LIMITER_SHARE * max(node.exec_time, 1e-9)
    if pool is not None and node.limit and node.full_share >= BOUND_SHARE and queued:
        out.append(
            f"bounded by {node.limit} {pool}: all {node.limit} busy "
            f"{100 * node.full_share:.0f} % of the time; items waited "
            f"{node.wait_time:.2f} s in all for one"
        )
    above = outside_limiters(node, limiters)
    if above is not None:
        out.append(above)
    if node.off_cpu_time > LIMITER_SHARE * node.exec_time > 0:
        out.append(
            f"its calls computed in threads and were off the CPU for {node.off_cpu_time:.2f} "
            f"s of their {node.exec_time:.2f} s running (the GIL lets one Python thread compute "
            "at a time). Use executor='process' for CPU-bound Python, or mark it cpu_bound "
            "(fk.to_thread(..., cpu_bound=True), cpu_bound = True) to count its CPU time only"
        )
    if node.limit is None or node.items < 2 or node.mean_in_flight >= UNDERUSE * node.limit:
        return out + bounds
    reasons: list[str] = []
    if node.loop_blocked > 0:
        reasons.append("the event loop was blocked")
    if bounds:
        reasons.extend(bounds)
    elif node.limiter_wait:
        limiter, waited = max(node.limiter_wait.items(), key=lambda kv: kv[1])
        if waited > LIMITER_SHARE * node.exec_time:
            reasons.append(
                f"items waited {waited:.2f} s in all for limiter {limiter!r}, whose budget "
                "set the pace"
            )
    if node.items < node.limit and node.mean_in_flight >= UNDERUSE * node.items:
        reasons.append(f"only {node.items} items for a limit of {node.limit}")
    if not reasons and node.peak_in_flight <= 1:
        reasons.append(
            "items ran one at a time: this node class runs its batch sequentially "
            "(use AsyncParallelBatchNode, or an executor)"
        )
    if not reasons:
        reasons.append(
            "no cause seen: items may arrive slowly from prep, or a few slow items dominate"
        )
    out.append(
        f"achieved {node.mean_in_flight:.1f} running on average (peak {node.peak_in_flight}) "
        f"of a limit of {node.limit}: " + "; ".join(reasons)
    )
    return out


def outside_limiters(node: NodeReport, limiters: Sequence[LimiterStats]) -> str | None:
    """Why a node had more calls running than the named limiters it takes allow, in words:
    its calls also ran outside them. None when its peak is within their capacity (or one of
    them bounds nothing in flight)."""
    taken = [lim for lim in limiters if node.name in lim.users]
    if not taken or any(lim.max_concurrency is None for lim in taken):
        return None
    allowed = sum(lim.max_concurrency or 0 for lim in taken)
    if node.peak_in_flight <= allowed:
        return None
    names = ", ".join(repr(lim.name) for lim in taken)
    return (
        f"peak {node.peak_in_flight} running is above the {allowed} its limiter(s) {names} "
        "allow: its calls also ran outside them (their own code, a thread or I/O before or "
        "after taking a limiter)"
    )
