"""Concurrency over time: calls running and waiting, per node and per named limiter, as step
series (``Series``) for the report's "concurrency over time" chart.

A series is exact (one step per change) while a run has at most ``MAX_STEPS`` changes;
beyond that it is cut into ``BUCKETS`` equal stretches of time, each holding the
time-weighted mean and the peak of its stretch, so neither the mean nor the peak is lost.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    kind: str,
    running: Spans,
    waiting: Spans,
    span: float,
    *,
    limit: int | None = None,
    source: SeriesSource = "calls",
) -> Series:
    """The step series of ``running`` and ``waiting`` stretches over ``[0, span]``."""
    times, run, wait = merge(levels(*running), levels(*waiting))
    if len(times) <= MAX_STEPS:
        return Series(
            name=name,
            kind="limiter" if kind == "limiter" else "node",
            limit=limit,
            source=source,
            t=[round(t, 6) for t in times],
            running=[float(v) for v in run],
            waiting=[float(v) for v in wait],
        )
    width = max(span, times[-1]) / BUCKETS
    area_r = [0.0] * BUCKETS
    area_w = [0.0] * BUCKETS
    peak_r = [0] * BUCKETS
    peak_w = [0] * BUCKETS
    end = width * BUCKETS
    for k, start in enumerate(times):
        stop = times[k + 1] if k + 1 < len(times) else end
        t = max(start, 0.0)  # nothing is drawn before the run's start
        if stop <= t:
            continue
        r, w = run[k], wait[k]
        first = min(int(t / width), BUCKETS - 1)
        last = min(int(stop / width), BUCKETS - 1)
        for b in range(first, last + 1):
            lo, hi = max(t, b * width), min(stop, (b + 1) * width)
            if hi > lo:
                area_r[b] += r * (hi - lo)
                area_w[b] += w * (hi - lo)
            if r > peak_r[b]:
                peak_r[b] = r
            if w > peak_w[b]:
                peak_w[b] = w
    return Series(
        name=name,
        kind="limiter" if kind == "limiter" else "node",
        limit=limit,
        source=source,
        t=[round(b * width, 6) for b in range(BUCKETS)],
        running=[round(a / width, 3) for a in area_r],
        waiting=[round(a / width, 3) for a in area_w],
        running_peak=peak_r,
        waiting_peak=peak_w,
    )
