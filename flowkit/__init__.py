"""flowkit: PocketFlow-style nodes and flows whose parallelism is real, bounded and visible."""

from flowkit.errors import FlowkitError
from flowkit.flow import (
    AsyncBatchFlow,
    AsyncFlow,
    AsyncParallelBatchFlow,
    BatchFlow,
    Flow,
    Parallel,
)
from flowkit.limits import Limit
from flowkit.node import (
    AsyncBatchNode,
    AsyncNode,
    AsyncParallelBatchNode,
    BaseNode,
    BatchNode,
    Node,
)
from flowkit.retry import Retry
from flowkit.runner import (
    ErrorRecord,
    NodeStats,
    RunInfo,
    Runner,
    current_limiter,
    record_usage,
    waiting,
)

__all__ = [
    "AsyncBatchFlow",
    "AsyncBatchNode",
    "AsyncFlow",
    "AsyncNode",
    "AsyncParallelBatchFlow",
    "AsyncParallelBatchNode",
    "BaseNode",
    "BatchFlow",
    "BatchNode",
    "ErrorRecord",
    "Flow",
    "FlowkitError",
    "Limit",
    "Node",
    "NodeStats",
    "Parallel",
    "Retry",
    "RunInfo",
    "Runner",
    "current_limiter",
    "record_usage",
    "waiting",
]
