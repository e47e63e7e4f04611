"""Pauses of the whole interpreter for garbage collection, timed while a run is observed.

A collection stops every call at once. Without this, a call that collection pauses in the
instant before it asks for a limiter would seem to run, for the length of the pause, next to
the calls holding that limiter: a peak above the limit that no call made. ``own_time`` is a
stretch's length less the collections inside it, which is what ``INSTANT``
(``flowkit.events``) is compared with.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_right
from typing import Any

MIN_PAUSE = 1e-4
"""Seconds: shorter collections (most of the youngest generation's) are not kept."""
KEEP = 10_000
"""The most pauses kept: older ones are forgotten (a report reads its run's at its end)."""


class Pauses:
    """Collections longer than ``MIN_PAUSE``, as sorted ``starts``/``ends`` (monotonic
    clock), kept while at least one run watches."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self._began: float | None = None
        self._watchers = 0

    def watch(self) -> None:
        if self._watchers == 0:
            gc.callbacks.append(self._collected)
        self._watchers += 1

    def unwatch(self) -> None:
        self._watchers -= 1
        if self._watchers == 0:
            gc.callbacks.remove(self._collected)
            del self.starts[:-KEEP], self.ends[:-KEEP]

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if phase == "start":
            self._began = now
        elif self._began is not None:
            if now - self._began >= MIN_PAUSE:
                self.starts.append(self._began)
                self.ends.append(now)
                if len(self.ends) > 2 * KEEP:
                    del self.starts[:-KEEP], self.ends[:-KEEP]
            self._began = None

    def within(self, a: float, b: float) -> float:
        """Seconds of ``[a, b]`` the interpreter spent collecting."""
        ends, starts = self.ends, self.starts
        total = 0.0
        for k in range(bisect_right(ends, a), len(ends)):
            if starts[k] >= b:
                break
            total += min(ends[k], b) - max(starts[k], a)
        return total


PAUSES = Pauses()


def own_time(a: float, b: float) -> float:
    """The length of ``[a, b]`` less the collections inside it."""
    if not PAUSES.ends or PAUSES.ends[-1] <= a:
        return b - a
    return b - a - PAUSES.within(a, b)
