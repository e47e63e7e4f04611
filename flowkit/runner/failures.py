"""Failures and recovery: retry a failed item per the node's policy, then its fallback, then
its on_error policy ("raise", or "collect" an ``ErrorRecord`` up to ``max_errors``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from flowkit.context import current_retry
from flowkit.errors import TooManyErrorsError
from flowkit.node import BaseNode, Node
from flowkit.results import ErrorRecord
from flowkit.retry import retry_failed
from flowkit.runner.admission import Admission
from flowkit.runner.checkpoint import Checkpoint

if TYPE_CHECKING:
    from flowkit.runner.plan import Plan
    from flowkit.runner.state import RunState

RetryCall = Callable[[Any, int], Awaitable[Any]]
"""Runs exec once more on an item: ``(item, attempt) -> result``."""


class Failures:
    """Applies a node's on_error policy to items of one batch that failed for good, and runs
    their recovery (retries, fallback) through the batch's admission."""

    __slots__ = ("admission", "count", "last_record", "node", "path", "plan", "run")

    def __init__(self, run: RunState, plan: Plan, node: BaseNode, admission: Admission) -> None:
        self.run, self.plan, self.node, self.admission = run, plan, node, admission
        self.path = admission.path
        self.count = 0
        self.last_record: ErrorRecord | None = None

    def handle(self, index: int, exc: Exception, attempts: int) -> ErrorRecord:
        """Count the failure and apply on_error: raise it, or collect and return its record."""
        plan = self.plan
        plan.stats.failed += 1
        self.run.event(
            "item_error",
            self.path,
            plan.name,
            index,
            False,
            attempts=attempts,
            error_type=type(exc).__name__,
            message=str(exc),
            policy=plan.on_error,
        )
        record = self.last_record = ErrorRecord.of(plan.name, index, exc, attempts)
        where = f"flowkit: {plan.name} failed on item {index} after {attempts} attempt(s)"
        if plan.on_error == "raise":
            if where not in getattr(exc, "__notes__", ()):
                exc.add_note(where)
            raise exc
        self.count += 1
        self.run.info.errors.append(record)
        if plan.max_errors is not None and self.count > plan.max_errors:
            raise TooManyErrorsError(
                f"{plan.name}: {self.count} items failed, more than max_errors="
                f"{plan.max_errors}; the batch was stopped. Last error (item {index}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return record

    async def settle(
        self,
        index: int,
        item: Any,
        exc: Exception,
        retry_call: RetryCall | None,
        ck: Checkpoint | None,
        key: str,
    ) -> Any:
        """Recover a failed item (``retry_call`` None: no more tries) and checkpoint how it
        ended: a result, a collected record, or the record of the error being raised."""
        try:
            if retry_call is None:
                res = await self.give_up(index, item, exc, 1)
            else:
                res = await self.recover(index, item, exc, retry_call)
        except Exception:
            last = self.last_record
            if ck is not None and last is not None and last.index == index:
                ck.save_record(key, index, last)
            raise
        if ck is not None:
            ck.save_outcome(key, index, res)
        return res

    async def recover(self, index: int, item: Any, exc: Exception, retry_call: RetryCall) -> Any:
        """Retry a failed item per the node's policy, then fall back, then apply on_error."""
        plan, admission = self.plan, self.admission

        def on_retry(attempt: int, wait: float, exc: Exception) -> None:
            plan.stats.retries += 1
            self.run.event(
                "item_retry",
                self.path,
                plan.name,
                index,
                False,
                attempt=attempt,
                wait=wait,
                error=f"{type(exc).__name__}: {exc}",
            )

        async def again(attempt: int) -> Any:
            await admission.enter(index)
            t0 = time.monotonic()
            ok = False
            try:
                result = await retry_call(item, attempt)
                ok = True
                return result
            finally:
                admission.leave()
                admission.span(index, t0, time.monotonic(), ok)

        ok, value, attempts = await retry_failed(
            exc, again, plan.retry, self.run.runner.sleep, on_retry
        )
        if ok:
            return value
        return await self.give_up(index, item, value, attempts)

    async def give_up(self, index: int, item: Any, exc: Exception, attempt: int) -> Any:
        """No tries left: the node's fallback, else its on_error policy."""
        node = self.node
        token = current_retry.set(attempt - 1)
        try:
            if self.plan.is_async:
                return await node.exec_fallback_async(item, exc)  # type: ignore[attr-defined]
            if isinstance(node, Node):
                return node.exec_fallback(item, exc)
            raise exc
        except Exception as final:
            return self.handle(index, final, attempt)
        finally:
            current_retry.reset(token)
