"""The micro-batching hand-off: a node with exec_batch gets one ``Batcher`` for the run,
whose batches are admitted and run on the node's executor like any other exec call."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flowkit.batching import Batcher
from flowkit.errors import ConfigError, NotImplementedExecError
from flowkit.limits import check_limit
from flowkit.node import BaseNode, defines
from flowkit.runner.admission import Admission

if TYPE_CHECKING:
    from flowkit.runner.plan import Plan
    from flowkit.runner.state import RunState


def make_batcher(run: RunState, plan: Plan, node: BaseNode) -> Batcher:
    """A micro-batcher for a node that defines exec_batch or exec_batch_async."""
    size = check_limit(node.batch_size, f"{plan.name}: batch_size")
    wait_ms = node.batch_wait_ms
    if isinstance(wait_ms, bool) or not isinstance(wait_ms, int | float) or wait_ms < 0:
        raise ConfigError(f"{plan.name}: batch_wait_ms must be a number >= 0, got {wait_ms!r}")
    cls = type(node)
    if plan.executor != "async" and not defines(node, "exec_batch"):
        raise NotImplementedExecError(
            f"{plan.name}: executor={plan.executor!r} runs the node's sync exec_batch(), "
            f"which {cls.__name__} does not define; implement exec_batch(self, items)"
        )
    is_async_batch = defines(node, "exec_batch_async")
    prepared: dict[int, tuple[BaseNode, Any]] = {}

    async def call(
        target: Any, items: list[Any], queued: list[float], paths: list[str]
    ) -> list[Any]:
        called = time.monotonic()
        for since, path in zip(queued, paths, strict=False):  # queued until its batch's call
            run.waited(plan, path, -1, "batch", since, called)
        admission = Admission(run, plan, paths[0])
        await admission.enter(-1, len(items))
        started, ok = time.monotonic(), False
        try:
            if plan.executor == "async":
                if is_async_batch:
                    result = await target.exec_batch_async(items)
                else:
                    result = target.exec_batch(items)
            else:
                executor = run.executor(plan.executor)
                held = prepared.get(id(target))
                if held is None:
                    held = prepared[id(target)] = (target, executor.prepare(target))
                [(done, result, started, _)] = await executor.run(held[1], items, None)
                if not done:
                    raise result
            ok = True
            return result
        finally:
            admission.leave()
            if run.emit is not None:
                ended = time.monotonic()
                for path in paths:
                    admission.span(-1, started, ended, ok, path)

    def on_retry(paths: list[str], attempt: int, wait: float, exc: Exception) -> None:
        """A batch call is retried: one retry for the node, one event per item in it."""
        plan.stats.retries += 1
        for path in paths:
            run.event(
                "item_retry",
                path,
                plan.name,
                -1,
                False,
                attempt=attempt,
                wait=wait,
                error=f"{type(exc).__name__}: {exc}",
            )

    return Batcher(
        plan.name, size, wait_ms / 1000, call, plan.retry, on_retry, run.runner.sleep, run.tasks
    )
