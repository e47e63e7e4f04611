"""flowkit: PocketFlow-style nodes and flows whose parallelism is real, bounded and visible.

Names are imported on first use (PEP 562), so ``import flowkit`` costs next to nothing and
a script pays only for what it touches: node classes do not load the runner, and the runner
loads the store, executors and observers when a run needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from flowkit.results import ErrorRecord, NodeStats, RunInfo
    from flowkit.retry import Retry
    from flowkit.runner import Runner, current_limiter, record_usage, waiting

_HOMES = {
    "FlowkitError": "flowkit.errors",
    "AsyncBatchFlow": "flowkit.flow",
    "AsyncFlow": "flowkit.flow",
    "AsyncParallelBatchFlow": "flowkit.flow",
    "BatchFlow": "flowkit.flow",
    "Flow": "flowkit.flow",
    "Parallel": "flowkit.flow",
    "Limit": "flowkit.limits",
    "AsyncBatchNode": "flowkit.node",
    "AsyncNode": "flowkit.node",
    "AsyncParallelBatchNode": "flowkit.node",
    "BaseNode": "flowkit.node",
    "BatchNode": "flowkit.node",
    "Node": "flowkit.node",
    "Retry": "flowkit.retry",
    "ErrorRecord": "flowkit.results",
    "NodeStats": "flowkit.results",
    "RunInfo": "flowkit.results",
    "Runner": "flowkit.runner",
    "current_limiter": "flowkit.runner",
    "record_usage": "flowkit.runner",
    "waiting": "flowkit.runner",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        try:  # a submodule, e.g. flowkit.errors after a bare ``import flowkit``
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'flowkit' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
