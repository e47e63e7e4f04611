"""What a run did, as data: per-node counts, failed items and the run's totals.

The runner fills these while it runs; observers (the report, progress, the CLI's last line)
and callers (``Runner.last_run``) read them.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field

from pydantic import BaseModel

from flowkit.events import INSTANT
from flowkit.limits import LimiterStats


class ErrorRecord(BaseModel):
    """What remains of an item that failed for good: in ``RunInfo.errors`` (under
    ``on_error="collect"``), in the store, and (redacted) in the run report."""

    node: str
    index: int
    error_type: str
    message: str
    traceback: str = ""
    attempts: int

    @classmethod
    def of(cls, node: str, index: int, exc: BaseException, attempts: int) -> ErrorRecord:
        """The record of ``exc``, raised by ``node`` on item ``index`` after ``attempts``."""
        return cls(
            node=node,
            index=index,
            error_type=type(exc).__name__,
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
            attempts=attempts,
        )


@dataclass(slots=True)
class ItemCounts:
    """A node's (or one path's) exec calls as its events tell them: every call that ended,
    the retries among them, and the items that failed for good. Progress and the report
    keep one each; the runner's own ``NodeStats`` counts items as it runs them."""

    calls: int = 0
    retries: int = 0
    failed: int = 0

    @property
    def done(self) -> int:
        """Items finished, whatever their outcome (each retry adds one more call)."""
        return self.calls - self.retries


@dataclass
class NodeStats:
    """Counts for one node over a run."""

    name: str
    limit: int | None
    executor: str
    items: int = 0
    failed: int = 0
    retries: int = 0
    peak_in_flight: int = 0
    limiter_wait: dict[str, float] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    wait_s: float = 0.0
    in_flight: int = field(default=0, repr=False)
    peak_at: float = field(default=0.0, repr=False)

    def enter(self) -> None:
        """Count one more exec call in flight."""
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
            self.peak_at = time.monotonic()

    def begin_wait(self) -> None:
        """An exec call in flight starts waiting: it stops counting as in flight. A peak it
        set within ``INSTANT`` (an exec that begins by waiting) is taken back."""
        if self.in_flight == self.peak_in_flight and time.monotonic() - self.peak_at < INSTANT:
            self.peak_in_flight -= 1
        self.in_flight -= 1


@dataclass
class RunInfo:
    """What a run did: its id, timing, per-node counts and collected errors."""

    run_id: str
    started: float
    wall_time: float = 0.0
    nodes: dict[str, NodeStats] = field(default_factory=dict)
    errors: list[ErrorRecord] = field(default_factory=list)
    resumed: int = 0
    memory_guard_engaged: int = 0
    limiters: dict[str, LimiterStats] = field(default_factory=dict)
