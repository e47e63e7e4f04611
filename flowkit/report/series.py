"""Concurrency over time: calls running and waiting, per node and per named limiter, as step
series (``Series``) for the report's "concurrency over time" chart.

A series is exact (one step per change) while a run has at most ``MAX_STEPS`` changes;
beyond that it is cut into ``BUCKETS`` equal stretches of time, each holding the
time-weighted mean and the peak of its stretch, so neither the mean nor the peak is lost.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate, pairwise, repeat
from operator import sub
from typing import Literal

from flowkit.report.model import Series, SeriesSource

MAX_STEPS = 1200
"""Changes a series keeps exactly; beyond this many it is cut into ``BUCKETS`` stretches."""
BUCKETS = 600
"""Stretches of equal time a long series is cut into (about two pixels each on the page)."""

Spans = tuple[Sequence[float], Sequence[float]]
"""Start times and end times (seconds from the run's start) of some stretches."""


def levels(starts: Sequence[float], ends: Sequence[float]) -> tuple[list[float], list[int]]:
    """How many of the spans ``[starts[i], ends[i])`` are open from each change on: the times
    where the count changes and the count from then. A span ending at the instant another
    starts does not overlap it (as ``writer.overlap`` counts)."""
    s, e = sorted(starts), sorted(ends)
    times: list[float] = []
    counts: list[int] = []
    i = j = level = 0
    while i < len(s) or j < len(e):
        t = e[j] if i == len(s) or (j < len(e) and e[j] <= s[i]) else s[i]
        while j < len(e) and e[j] == t:
            level -= 1
            j += 1
        while i < len(s) and s[i] == t:
            level += 1
            i += 1
        if times and times[-1] == t:
            counts[-1] = level
        else:
            times.append(t)
            counts.append(level)
    return times, counts


def merge(
    a: tuple[list[float], list[int]], b: tuple[list[float], list[int]]
) -> tuple[list[float], list[int], list[int]]:
    """Two step functions on one time axis: the union of their change times, and each one's
    level from each of those times."""
    (ta, la), (tb, lb) = a, b
    times: list[float] = []
    out_a: list[int] = []
    out_b: list[int] = []
    i = j = va = vb = 0
    while i < len(ta) or j < len(tb):
        t = min(ta[i] if i < len(ta) else float("inf"), tb[j] if j < len(tb) else float("inf"))
        if i < len(ta) and ta[i] == t:
            va = la[i]
            i += 1
        if j < len(tb) and tb[j] == t:
            vb = lb[j]
            j += 1
        times.append(t)
        out_a.append(va)
        out_b.append(vb)
    return times, out_a, out_b


def series(
    name: str,
    kind: Literal["node", "limiter"],
    running: Spans,
    waiting: Spans,
    span: float,
    *,
    limit: int | None = None,
    source: SeriesSource = "calls",
) -> Series:
    """The step series of ``running`` and ``waiting`` stretches over ``[0, span]``."""
    if 2 * (len(running[0]) + len(waiting[0])) <= MAX_STEPS:
        times, run, wait = merge(levels(*running), levels(*waiting))
        return Series(
            name=name,
            kind=kind,
            limit=limit,
            source=source,
            t=[round(t, 6) for t in times],
            running=[float(v) for v in run],
            waiting=[float(v) for v in wait],
        )
    end = max([span, *running[1][-1:], *waiting[1][-1:]])
    edges = [end * b / BUCKETS for b in range(BUCKETS + 1)]
    mean_r, peak_r = stretches(*running, edges)
    mean_w, peak_w = stretches(*waiting, edges)
    return Series(
        name=name,
        kind=kind,
        limit=limit,
        source=source,
        t=[round(t, 6) for t in edges[:-1]],
        running=mean_r,
        waiting=mean_w,
        running_peak=peak_r,
        waiting_peak=peak_w,
    )


def stretches(
    starts: Sequence[float], ends: Sequence[float], edges: Sequence[float]
) -> tuple[list[float], list[int]]:
    """The time-weighted mean and the peak count of open spans within each stretch
    ``[edges[k], edges[k + 1])``, exactly, in O(n log n) with the loops in C: the count at
    ``t`` is (starts <= t) - (ends <= t), and its integral up to ``t`` follows from prefix
    sums of the sorted starts and ends."""
    s, e = sorted(starts), sorted(ends)
    sum_s = [0.0, *accumulate(s)]
    sum_e = [0.0, *accumulate(e)]
    # the count just after each start (an end at the same instant closes first)
    after = list(map(sub, range(1, len(s) + 1), map(bisect_right, repeat(e), s)))

    def integral(t: float) -> float:
        cs, ce = bisect_right(s, t), bisect_right(e, t)
        return t * (cs - ce) - (sum_s[cs] - sum_e[ce])

    means: list[float] = []
    peaks: list[int] = []
    below = integral(edges[0])
    for lo, hi in pairwise(edges):
        above = integral(hi)
        means.append(round((above - below) / (hi - lo), 3) if hi > lo else 0.0)
        below = above
        at_lo = bisect_right(s, lo) - bisect_right(e, lo)
        first, last = bisect_right(s, lo), bisect_left(s, hi)
        peaks.append(max(at_lo, max(after[first:last], default=0)))
    return means, peaks
