"""The runner package: walks a flow's graph and owns how its work runs.

``Runner`` (``run``) holds the options; one run's state (``state``) holds its plans
(``plan``), limiters, executors and store. The graph walk (``walk``) hands each node's items
to the item loops (``items``, ``lanes``), which admit every exec call (``admission``),
recover failures (``failures``), checkpoint results (``checkpoint``) and respect the memory
guard (``memory``); background work belongs to the run's task group (``tasks``); code inside
exec reaches the run through ``context``. Importing this package installs the runner as the
engine of PocketFlow's ``node.run()``.
"""

from __future__ import annotations

from flowkit.context import install_engine
from flowkit.results import ErrorRecord, NodeStats, RunInfo
from flowkit.runner.context import LimiterHandle, current_limiter, record_usage, waiting
from flowkit.runner.memory import MemoryGuard, current_rss
from flowkit.runner.plan import DEFAULT_PARALLEL_CAP
from flowkit.runner.run import Engine, Runner, run_in_current_or_new

__all__ = [
    "DEFAULT_PARALLEL_CAP",
    "ErrorRecord",
    "LimiterHandle",
    "MemoryGuard",
    "NodeStats",
    "RunInfo",
    "Runner",
    "current_limiter",
    "current_rss",
    "record_usage",
    "run_in_current_or_new",
    "waiting",
]

install_engine(Engine())
