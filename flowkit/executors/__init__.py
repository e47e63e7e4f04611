"""Where exec runs when it leaves the event loop: threads, worker processes, Ray.

Each is an ``Executor`` (``base``). Process and Ray executors take items in chunks; a node
travels to each worker process once (keyed by a digest of its pickle) rather than with every
chunk. Worker processes ignore SIGINT, are killed when their chunk is cancelled, and are all
stopped when the run ends.
"""

from __future__ import annotations

from flowkit.executors.base import (
    Executor,
    NodePayload,
    Outcome,
    call_with_retry_index,
    cpu_count,
    portable_outcomes,
    run_items,
)
from flowkit.executors.process import ProcessExecutor
from flowkit.executors.ray import RayExecutor
from flowkit.executors.thread import ThreadExecutor, thread_pool
from flowkit.executors.workers import WORKER_CACHE, exchange, next_message, start_worker

__all__ = [
    "WORKER_CACHE",
    "Executor",
    "NodePayload",
    "Outcome",
    "ProcessExecutor",
    "RayExecutor",
    "ThreadExecutor",
    "call_with_retry_index",
    "cpu_count",
    "exchange",
    "next_message",
    "portable_outcomes",
    "run_items",
    "start_worker",
    "thread_pool",
]

