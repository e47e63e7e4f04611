"""A node's plan: how it runs in this run (executor, limit, workers, retry, codec), read once
from its options and shared by every copy of the node at every path."""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING

from flowkit.batching import Batcher
from flowkit.errors import FlowkitWarning, NotImplementedExecError
from flowkit.limits import NamedLimiter, Slots, check_limit
from flowkit.node import AsyncNode, AsyncParallelBatchNode, BaseNode, BatchNode, Node, defines
from flowkit.node import node_options as read_options
from flowkit.retry import Retry
from flowkit.runner.batches import make_batcher
from flowkit.store import ResultCodec

if TYPE_CHECKING:
    from flowkit.runner.state import RunState

DEFAULT_PARALLEL_CAP = 1000
"""Items or sub-flows in flight for a parallel node or flow that sets no limit."""

UNLIMITED = sys.maxsize


def batched(node: BaseNode) -> bool:
    """Whether ``node`` micro-batches: it defines exec_batch or exec_batch_async."""
    return defines(node, "exec_batch") or defines(node, "exec_batch_async")


def overrides(cls: type, method: str) -> bool:
    """Whether ``cls`` defines its own ``method`` (exec, prep_async, ...)."""
    return getattr(cls, method) is not getattr(BaseNode if method == "exec" else AsyncNode, method)


_warned_classes: set[tuple[type, str]] = set()


def warn_unused_sync_hooks(cls: type, name: str) -> None:
    """PocketFlow's async nodes never call sync prep/exec/post; flowkit runs them the same way
    and says once per class that a sync hook defined there is not called."""
    for hook in ("prep", "exec", "post"):
        if (cls, hook) in _warned_classes:
            continue
        if overrides(cls, hook) and not overrides(cls, f"{hook}_async"):
            _warned_classes.add((cls, hook))
            warnings.warn(
                f"{name}: {cls.__name__} is an async node, so its sync {hook}() is never "
                f"called (as in PocketFlow) and {hook}_async() returns None; rename it to "
                f"`async def {hook}_async`, or for exec set executor='thread' to run it",
                FlowkitWarning,
                stacklevel=2,
            )


class Plan:
    """How one node (and every copy of it) runs in this run; built once per node."""

    __slots__ = (
        "batch",
        "batcher",
        "checkpoint",
        "chunk_size",
        "codec",
        "executor",
        "is_async",
        "limiters",
        "max_errors",
        "name",
        "on_error",
        "retry",
        "skip_exec",
        "slots",
        "stats",
        "workers",
    )

    def __init__(self, run: RunState, node: BaseNode) -> None:
        cls = type(node)
        self.name = node.name
        self.is_async = isinstance(node, AsyncNode)
        options = read_options(node)
        executor = options.executor or "async"
        self.executor = executor
        self.batch = isinstance(node, BatchNode)
        self.on_error = options.on_error
        self.max_errors = options.max_errors
        self.chunk_size = options.chunk_size
        if executor != "async" and not overrides(cls, "exec") and not batched(node):
            raise NotImplementedExecError(
                f"{self.name}: executor={executor!r} runs the node's sync exec(), which "
                f"{cls.__name__} does not define; implement exec(self, item)"
            )
        if executor == "async" and self.is_async:
            warn_unused_sync_hooks(cls, self.name)
        limit = options.limit(self.name, run.runner.node_limits)
        if limit is not None:
            limit = check_limit(limit, f"{self.name}: max_concurrency")
        if executor == "async":
            parallel = isinstance(node, AsyncParallelBatchNode)
            pool_size = DEFAULT_PARALLEL_CAP if parallel else 1
        else:
            parallel = True
            pool_size = run.executor(executor).size
        self.workers = (limit or pool_size) if self.batch and parallel else 1
        self.slots = Slots(limit or (pool_size if executor != "async" else UNLIMITED))
        self.limiters: tuple[NamedLimiter, ...] = tuple(
            run.limiter(name, self.name) for name in sorted(set(options.uses))
        )
        for lim in self.limiters:
            lim.used_by(self.name, "runner")
        if options.retry is not None:
            self.retry: Retry | None = options.retry
        else:
            attempts = getattr(node, "max_retries", 1)
            wait = getattr(node, "wait", 0)
            self.retry = Retry.fixed(attempts, wait) if attempts > 1 else None
        self.skip_exec = isinstance(node, Node) and getattr(node, "max_retries", 1) < 1
        if self.skip_exec:
            warnings.warn(
                f"{self.name}: max_retries={node.max_retries} leaves no try, so exec is never "  # type: ignore[attr-defined]
                "called and every result is None (as in PocketFlow); use max_retries=1",
                FlowkitWarning,
                stacklevel=2,
            )
        self.stats = run.stats_for(self.name, limit, executor)
        self.checkpoint = options.checkpoint
        self.batcher: Batcher | None = make_batcher(run, self, node) if batched(node) else None
        if self.batcher is not None:
            per_call = limit or (pool_size if executor != "async" else DEFAULT_PARALLEL_CAP)
            self.workers = min(DEFAULT_PARALLEL_CAP, self.batcher.size * per_call)
        method = getattr(cls, "exec_async" if executor == "async" and self.is_async else "exec")
        self.codec = ResultCodec.for_method(self.name, method)
