"""What a run did, as data: per-node counts, failed items and the run's totals.

The runner keeps these as it runs, in one place (``flowkit.runner.items``); observers (the
report, progress, the CLI's last line) and callers (a run's handle, ``Runner.last_run``)
read them.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flowkit.budgets import BudgetStats
from flowkit.engine import run_html
from flowkit.limits import LimiterStats
from flowkit.redact import redact

if TYPE_CHECKING:
    from flowkit.events import ItemFailed

__all__ = [
    "Counts",
    "ErrorRecord",
    "ItemResult",
    "NodeStats",
    "RunInfo",
]


class ErrorRecord(BaseModel):
    """What remains of an item that failed for good: in ``RunInfo.errors`` (under
    ``on_error="collect"``), in the store and in the run report. Message and traceback are
    redacted when the record is made, so no copy of it holds a secret."""

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

    @classmethod
    def failed(cls, event: ItemFailed) -> ErrorRecord:
        """The record of an ``item_error`` event (its message is redacted already)."""
        return cls(
            node=event.node,
            index=event.index,
            error_type=event.error_type,
            message=event.message,
            attempts=event.attempts,
        )


@dataclass(slots=True)
class Counts:
    """Item counts at one place in the graph (a path), over every run of it.

    ``items`` counts items finished, whatever their outcome; ``retries`` the extra exec
    calls; ``failed`` the items that failed for good; ``total`` the items prep announced
    (None once one batch's size was unknown); ``timeouts`` the tries that ran past the
    node's timeout; ``cached`` the items reused from the runner's cache. Calls in flight are
    counted per node (``NodeStats.in_flight``).
    """

    items: int = 0
    retries: int = 0
    failed: int = 0
    total: int | None = 0
    timeouts: int = 0
    cached: int = 0

    @property
    def calls(self) -> int:
        """Exec calls that ended: every item finished, plus one more per retry."""
        return self.items + self.retries


@dataclass
class NodeStats:
    """One node over a run (every copy of it, at every path): its limit and executor, calls
    in flight and their peak, waits, usage, CPU seconds its calls spent in threads
    (``cpu_s``) and the seconds computing calls in threads, not marked ``cpu_bound``, were off
    the CPU yet counted as running (``off_cpu_s``), and item ``Counts`` per path."""

    name: str
    limit: int | None
    executor: str
    peak_in_flight: int = 0
    limiter_wait: dict[str, float] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    wait_s: float = 0.0
    cpu_s: float = 0.0
    off_cpu_s: float = 0.0
    paths: dict[str, Counts] = field(default_factory=dict)
    in_flight: int = field(default=0, repr=False)
    peak_at: float = field(default=0.0, repr=False)
    timeout: float | None = None

    @property
    def items(self) -> int:
        """Items finished at every path, whatever their outcome."""
        return sum(c.items for c in self.paths.values())

    @property
    def retries(self) -> int:
        return sum(c.retries for c in self.paths.values())

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.paths.values())

    @property
    def calls(self) -> int:
        return self.items + self.retries

    @property
    def timeouts(self) -> int:
        """Tries that ran past the node's timeout, at every path."""
        return sum(c.timeouts for c in self.paths.values())

    @property
    def cached(self) -> int:
        """Items reused from the runner's cache, at every path."""
        return sum(c.cached for c in self.paths.values())


STATUSES = ("running", "done", "failed", "interrupted", "budget")


@dataclass
class RunInfo:
    """What a run did: its id, flow, status, timing, per-node counts and collected errors.

    ``status`` is "running" until the run ends, then "done", "failed", "interrupted" (cancelled,
    e.g. by Ctrl-C: what did not finish runs again on resume) or "budget" (a budget was
    spent: ``budgets`` shows each one's spending against its caps).
    """

    run_id: str
    started: float
    flow: str = ""
    status: str = "running"
    wall_time: float = 0.0
    nodes: dict[str, NodeStats] = field(default_factory=dict)
    errors: list[ErrorRecord] = field(default_factory=list)
    resumed: int = 0
    memory_guard_engaged: int = 0
    limiters: dict[str, LimiterStats] = field(default_factory=dict)
    budgets: dict[str, BudgetStats] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the run ended with every item done."""
        return self.status == "done" and not any(n.failed for n in self.nodes.values())

    def _repr_html_(self) -> str:
        """The run's report as HTML, which a notebook shows inline (installed by the
        composition root: ``flowkit.report.inline``)."""
        return run_html(self)

    @property
    def cached(self) -> int:
        """Items reused from the runner's cache."""
        return sum(n.cached for n in self.nodes.values())


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item's outcome as it lands (``Runner.stream``): the node's ``path`` and name,
    the item's ``index`` in its batch (0 for a node without a batch), and exec's ``value``,
    or ``error`` (an ``ErrorRecord``) for an item that failed for good."""

    path: str
    node: str
    index: int
    value: Any = None
    error: ErrorRecord | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
