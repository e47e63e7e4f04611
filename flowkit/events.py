"""Structured events from a run, delivered to subscribers (progress, report, store).

The runner emits nothing per item unless someone subscribed, so an unobserved run pays only
an ``is None`` check per item. Times are ``time.monotonic()`` seconds, comparable across the
worker processes of one machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal[
    "run_start",
    "run_end",
    "node_start",
    "node_end",
    "batch_start",
    "item_start",
    "item_end",
    "item_retry",
    "item_error",
    "limiter_wait",
    "item_wait",
    "loop_blocked",
    "memory_guard",
    "usage",
]

INSTANT = 1e-3
"""Seconds: an exec call that starts waiting (for a limiter, say) within this long of its
start counts as waiting from its start, in the run's counts and in its report."""


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened in a run.

    ``path`` is the node's place in the graph (flow and node names joined by "/"), ``node``
    its name, ``index`` the item's position in its batch, ``ok`` whether an item succeeded.
    ``data`` carries kind-specific details (limit, executor, error, attempt, wait seconds).
    """

    kind: EventKind
    time: float
    run_id: str
    path: str = ""
    node: str = ""
    index: int = -1
    ok: bool = True
    data: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[Event], None]


class Observer:
    """Base for subscribers that also want the run's start and close.

    ``start`` is called on the event loop before the first event; ``close`` after the last,
    also when the run fails or is cancelled.
    """

    def start(self, run_id: str) -> None:
        """The run is about to start."""

    def __call__(self, event: Event) -> None:
        """Receive one event."""

    def close(self) -> None:
        """The run is over."""
