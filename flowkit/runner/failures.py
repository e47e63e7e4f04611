"""Failures and recovery: retry a failed item per the node's policy, then its fallback, then
its on_error policy ("raise", or "collect" an ``ErrorRecord`` up to ``max_errors``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from flowkit.engine import current_retry
from flowkit.errors import ItemTimeoutError, TooManyErrorsError
from flowkit.events import CallEnded, CallStarted, ItemFailed, TimedOut
from flowkit.node import BaseNode, Node
from flowkit.redact import redact
from flowkit.results import ErrorRecord
from flowkit.retry import retry_failed
from flowkit.runner.current import current_call

if TYPE_CHECKING:
    from flowkit.runner.checkpoint import Checkpoint
    from flowkit.runner.items import NodeRun

RetryCall = Callable[[Any, int], Awaitable[Any]]
"""Runs exec once more on an item: ``(item, attempt) -> result``."""


class Failures:
    """The failed items of one batch of ``nr``'s node at ``path``: their recovery, and the
    node's on_error policy for those that fail for good."""

    __slots__ = ("count", "last_record", "node", "nr", "path", "recovered")

    def __init__(self, nr: NodeRun, node: BaseNode, path: str) -> None:
        self.nr, self.node, self.path = nr, node, path
        self.count = 0
        self.last_record: ErrorRecord | None = None
        self.recovered = -1  # the item whose retry just succeeded

    async def settle(
        self,
        index: int,
        item: Any,
        exc: Exception,
        retry: RetryCall | None,
        ck: Checkpoint | None,
        key: str,
    ) -> Any:
        """Recover a failed item (``retry`` None: no more tries) and checkpoint how it ended:
        a result, a collected record, or the record of the error being raised."""
        if isinstance(exc, ItemTimeoutError):
            self.timed_out(index, exc)
        try:
            if retry is None:
                res = await self.give_up(index, item, exc, 1)
            else:
                res = await self.recover(index, item, exc, retry)
        except Exception:
            last = self.last_record
            if ck is not None and last is not None and last.index == index:
                ck.save_record(key, index, last)
            raise
        if ck is not None:  # a retried success is a result like any; the rest, outcomes
            (ck.save if self.recovered == index else ck.save_outcome)(key, index, res)
        return res

    async def recover(self, index: int, item: Any, exc: Exception, retry: RetryCall) -> Any:
        """Retry a failed item per the node's policy, then fall back, then apply on_error."""
        nr, path = self.nr, self.path

        def on_retry(attempt: int, wait: float, exc: Exception) -> None:
            nr.retrying(path, index, attempt, wait, exc)

        async def again(attempt: int) -> Any:
            await nr.enter(index, 1, path)
            emit = nr.emit
            call = next(nr.call_ids) if emit is not None else -1
            if emit is not None:
                current_call.set((index, call))
                emit(CallStarted(time.monotonic(), nr.run_id, path, nr.name, index, call))
            ok = False
            try:
                result = await retry(item, attempt)
                ok = True
                return result
            except ItemTimeoutError as exc:
                self.timed_out(index, exc)
                raise
            finally:
                nr.leave()
                if emit is not None:
                    emit(CallEnded(time.monotonic(), nr.run_id, path, nr.name, index, call, ok))

        ok, value, attempts = await retry_failed(exc, again, nr.plan.retry, nr.sleep, on_retry)
        if ok:
            self.recovered = index
            return value
        return await self.give_up(index, item, value, attempts)

    def timed_out(self, index: int, exc: ItemTimeoutError) -> None:
        """A try of item ``index`` ran past the node's timeout: counted, and said."""
        nr = self.nr
        exc.index = index
        nr.counts(self.path).timeouts += 1
        if nr.emit is not None:
            now = time.monotonic()
            nr.emit(TimedOut(now, nr.run_id, self.path, nr.name, index, exc.seconds, exc.how))

    async def give_up(self, index: int, item: Any, exc: Exception, attempt: int) -> Any:
        """No tries left: the node's fallback, else its on_error policy."""
        node = self.node
        token = current_retry.set(attempt - 1)
        try:
            if self.nr.plan.is_async:
                return await node.exec_fallback_async(item, exc)  # type: ignore[attr-defined]
            if isinstance(node, Node):
                return node.exec_fallback(item, exc)
            raise exc
        except Exception as final:
            return self.handle(index, final, attempt)
        finally:
            current_retry.reset(token)

    def handle(self, index: int, exc: Exception, attempts: int) -> ErrorRecord:
        """Count the failure and apply on_error: raise it, or collect and return its record."""
        nr, plan = self.nr, self.nr.plan
        nr.counts(self.path).failed += 1
        if nr.emit is not None:
            nr.emit(
                ItemFailed(
                    time.monotonic(),
                    nr.run_id,
                    self.path,
                    plan.name,
                    index,
                    attempts,
                    type(exc).__name__,
                    redact(str(exc)),
                    plan.on_error,
                )
            )
        record = self.last_record = ErrorRecord.of(plan.name, index, exc, attempts)
        where = f"flowkit: {plan.name} failed on item {index} after {attempts} attempt(s)"
        if plan.on_error == "raise":
            if where not in getattr(exc, "__notes__", ()):
                exc.add_note(where)
            raise exc
        self.count += 1
        nr.errors.append(record)
        if plan.max_errors is not None and self.count > plan.max_errors:
            raise TooManyErrorsError(
                f"{plan.name}: {self.count} items failed, more than max_errors="
                f"{plan.max_errors}; the batch was stopped. Last error (item {index}): "
                f"{type(exc).__name__}: {redact(str(exc))}"
            ) from exc
        return record
