"""The live view's record of a run: each series (a node, a named limiter) as at most
``BUCKETS`` stretches of equal time, filled from samples of the run's own counts and from
waits as they end; neighbouring stretches merge as the run goes on, so memory and the work
of drawing stay bounded however long it runs."""

from __future__ import annotations

from typing import Literal

from flowkit.report.model import Series

BUCKETS = 600
"""Stretches kept per series; past that many, neighbours merge (each stretch doubles)."""


class Gauge:
    """One series over the run so far, in stretches of ``width`` seconds: the mean and the
    peak of the running samples in each, and the time spent waiting in each (from waits
    that ended), so a stretch's mean waiting count is its wait time over its width."""

    __slots__ = ("run_n", "run_peak", "run_sum", "wait_area", "width")

    def __init__(self, width: float) -> None:
        self.width = width
        self.run_sum: list[float] = []
        self.run_n: list[int] = []
        self.run_peak: list[int] = []
        self.wait_area: list[float] = []

    def _at(self, t: float) -> int:
        k = int(max(t, 0.0) / self.width)
        while k >= BUCKETS:
            self._halve()
            k = int(max(t, 0.0) / self.width)
        while len(self.run_sum) <= k:
            self.run_sum.append(0.0)
            self.run_n.append(0)
            self.run_peak.append(0)
            self.wait_area.append(0.0)
        return k

    def _halve(self) -> None:
        """Merge neighbouring stretches: half as many, each twice as long."""
        self.width *= 2
        for name in self.__slots__:
            if name == "width":
                continue
            old = getattr(self, name)
            pairs = [old[i : i + 2] for i in range(0, len(old), 2)]
            setattr(self, name, [max(p) if name == "run_peak" else sum(p) for p in pairs])

    def sample(self, t: float, running: int, peak: int = 0) -> None:
        """``running`` calls ran at ``t``; ``peak`` ran at once at some point since the last
        sample."""
        k = self._at(t)
        self.run_sum[k] += running
        self.run_n[k] += 1
        self.run_peak[k] = max(self.run_peak[k], running, peak)

    def waited(self, start: float, end: float) -> None:
        """A wait from ``start`` to ``end`` ended."""
        start = max(start, 0.0)
        last = self._at(end)
        first = int(start / self.width)
        w = self.width
        for k in range(first, last + 1):
            overlap = min(end, (k + 1) * w) - max(start, k * w)
            if overlap > 0:
                self.wait_area[k] += overlap

    def running_time(self) -> tuple[float, float]:
        """Call-seconds of running, and the seconds in which something ran (estimates)."""
        total = busy = 0.0
        for s, n, p in zip(self.run_sum, self.run_n, self.run_peak, strict=True):
            total += (s / n if n else 0.0) * self.width
            busy += self.width if p else 0.0
        return total, busy

    def series(
        self, name: str, kind: Literal["node", "limiter"], limit: int | None, now: float
    ) -> Series:
        """The stretches so far as a report ``Series`` (means, with each stretch's peak)."""
        w = self.width
        running: list[float] = []
        last = 0.0
        for s, n in zip(self.run_sum, self.run_n, strict=True):
            last = round(s / n, 3) if n else last
            running.append(last)
        waiting = [
            round(a / max(min(w, now - k * w), 1e-9), 3) for k, a in enumerate(self.wait_area)
        ]
        return Series(
            name=name,
            kind=kind,
            limit=limit,
            source="holders" if kind == "limiter" else "calls",
            t=[round(k * w, 6) for k in range(len(running))],
            running=running,
            waiting=waiting,
            running_peak=list(self.run_peak),
        )


class LimiterState:
    """A named limiter as its events show it: holders now, their peak and area, waits."""

    __slots__ = (
        "area",
        "calls",
        "first",
        "full",
        "holders",
        "last",
        "peak",
        "peak_since",
        "wait_s",
        "waits",
    )

    def __init__(self) -> None:
        self.holders = self.peak = self.peak_since = self.calls = self.waits = 0
        self.area = self.full = self.wait_s = 0.0
        self.first: float | None = None
        self.last = 0.0
