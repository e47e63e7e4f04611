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
from flowkit.redact import redact


class ErrorRecord(BaseModel):
    """What remains of an item that failed for good: in ``RunInfo.errors`` (under
    ``on_error="collect"``), in the store, in exports and in the run report.

    ``of`` redacts the message and traceback (``flowkit.redact``) as it builds the record, so
    no copy of it anywhere holds an API key, a token or a URL's password."""

    node: str
    index: int
    error_type: str
    message: str
    traceback: str = ""
    attempts: int

    @classmethod
    def of(cls, node: str, index: int, exc: BaseException, attempts: int) -> ErrorRecord:
        """The record of ``exc``, raised by ``node`` on item ``index`` after ``attempts``,
        secrets redacted."""
        return cls(
            node=node,
            index=index,
            error_type=type(exc).__name__,
            message=redact(str(exc)),
            traceback=redact("".join(traceback.format_exception(exc))),
            attempts=attempts,
        )


@dataclass(slots=True, kw_only=True)
class ItemCounts:
    """A node's (or one path's) item counts: the items finished, whatever their outcome; the
    retries (each one more exec call); the items that failed for good.

    The one count model: the runner's ``NodeStats`` builds on it and counts items as it runs
    them; progress rows and the report's node logs keep one each and count from events with
    ``call_ended`` and ``call_retried``."""

    items: int = 0
    retries: int = 0
    failed: int = 0

    @property
    def calls(self) -> int:
        """Exec calls that ended: every item finished, plus one more per retry."""
        return self.items + self.retries

    @property
    def done(self) -> int:
        """Items finished, whatever their outcome (each retry adds one more call)."""
        return self.items

    def call_ended(self) -> None:
        """An exec call ended (an ``item_end`` event): its item counts as finished until an
        ``item_retry`` says it runs again."""
        self.items += 1

    def call_retried(self) -> None:
        """The call that just ended is retried (an ``item_retry`` event): its item is not
        finished yet; the call counts as a retry."""
        self.items -= 1
        self.retries += 1


@dataclass
class NodeStats(ItemCounts):
    """Counts for one node over a run: ``ItemCounts`` as the runner keeps them (``items``,
    ``retries``, ``failed``), with the node's limit, executor, peak in flight and waits."""

    name: str
    limit: int | None
    executor: str
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
