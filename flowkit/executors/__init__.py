"""Where exec runs: the event loop, threads, worker processes, Ray, micro-batches, or an
executor of the user's own. Each is an object behind the ``Executor`` protocol (``base``).

Process and Ray executors take items in chunks; a node travels to each worker process once
(keyed by a digest of its pickle) rather than with every chunk. Worker processes ignore
SIGINT, die with the process that started them, are killed when their chunk is cancelled,
and are all stopped when the run ends.
"""

from __future__ import annotations

from flowkit.executors.base import Binding, Executor, Outcome, cpu_count
from flowkit.executors.loop import LoopExecutor
from flowkit.executors.process import ProcessExecutor
from flowkit.executors.ray import RayExecutor
from flowkit.executors.thread import ThreadExecutor

__all__ = [
    "Binding",
    "Executor",
    "LoopExecutor",
    "Outcome",
    "ProcessExecutor",
    "RayExecutor",
    "ThreadExecutor",
    "cpu_count",
]
