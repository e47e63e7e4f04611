"""The runner: walks a flow's graph and owns how its work runs.

``run`` holds the runner, a run's state and the graph walk; ``plan`` the settings and node
plans computed before a run; ``items`` the item path and each node's run-time state;
``failures``, ``checkpoint``, ``memory`` and ``tasks`` what only some runs need, as do
``timeouts``, ``budget`` (budgets with a hard stop), ``caching`` (the cache across runs)
and ``stream`` (results as they land); ``current`` what code inside exec may reach
(limiters, waits, threads, usage, operations).
"""

from __future__ import annotations

from flowkit.runner.current import (
    current_limiter,
    operation,
    record_usage,
    to_thread,
    waiting,
)
from flowkit.runner.nodes import DEFAULT_PARALLEL_CAP
from flowkit.runner.run import RunHandle, Runner
from flowkit.runner.stream import RunStream

__all__ = [
    "DEFAULT_PARALLEL_CAP",
    "RunHandle",
    "RunStream",
    "Runner",
    "current_limiter",
    "operation",
    "record_usage",
    "to_thread",
    "waiting",
]
