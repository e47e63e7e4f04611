"""A run's events as one OpenTelemetry span tree: the run, each flow and node, each item's
exec call, and what happened inside it (operations such as LLM requests, and waits).

Spans are made from the typed events with the events' own times, so a trace shows what the
report shows: running and waiting. A node's span is the parent of the calls its workers make:
the observer keeps the open span in a context variable, which asyncio copies into each task
the node starts, so copies of one node running side by side (a parallel batch flow's passes)
each get their own children. A call's span is made when the call ends, with the waits and
operations recorded inside it as children; a failed call's span waits for its verdict
(retried, failed for good) before it ends. Every string attribute is redacted.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from flowkit.events import (
    BatchStarted,
    CallEnded,
    CallRetried,
    CallStarted,
    Event,
    ItemFailed,
    LoopBlocked,
    MemoryGuarded,
    NodeEnded,
    NodeStarted,
    Observer,
    Operation,
    RunEnded,
    RunStarted,
    Usage,
    Waited,
)
from flowkit.otel.queue import report
from flowkit.redact import redact
from flowkit.results import RunInfo
from flowkit.runner.current import current_call

if TYPE_CHECKING:
    from flowkit.otel.export import OtelExport, Pipeline

KIND = "openinference.span.kind"
"""The span kind tracing UIs for LLM apps (Phoenix, OpenInference) group spans by."""
_MEMO_MAX = 10_000

Attributes = dict[str, str | int | float | bool]


class _Open:
    """An open run, flow or node span, and what is summed on it until it ends."""

    __slots__ = ("ctx", "executor", "path", "prev", "span", "usage", "wait_s")

    def __init__(self, span: Any, path: str, prev: _Open | None, executor: str = "") -> None:
        self.span, self.path, self.prev, self.executor = span, path, prev, executor
        self.ctx = trace.set_span_in_context(span)
        self.usage: dict[str, float] = {}
        self.wait_s = 0.0


class _Call:
    """An exec call in progress; its span is made when it ends."""

    __slots__ = ("attempt", "children", "index", "node", "parent", "path", "start", "usage")

    def __init__(self, event: CallStarted, parent: _Open, attempt: int) -> None:
        self.start, self.parent, self.attempt = event.time, parent, attempt
        self.index, self.path, self.node = event.index, event.path, event.node
        self.children: list[tuple[str, float, float, Attributes, bool]] = []
        self.usage: dict[str, float] = {}


class OtelObserver(Observer):
    """Exports one run as OpenTelemetry spans through ``export`` (see ``OtelExport``)."""

    def __init__(self, export: OtelExport) -> None:
        self.export = export
        self.calls_per_node = export.item_spans
        self._pipeline: Pipeline | None = None
        self._current: ContextVar[_Open | None] = ContextVar("flowkit_otel_open", default=None)
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            RunStarted: self._run_started,
            RunEnded: self._run_ended,
            NodeStarted: self._node_started,
            NodeEnded: self._node_ended,
            BatchStarted: self._batch_started,
            CallStarted: self._call_started,
            CallEnded: self._call_ended,
            CallRetried: self._call_retried,
            ItemFailed: self._item_failed,
            Waited: self._waited,
            Operation: self._operation,
            Usage: self._usage,
            LoopBlocked: self._loop_blocked,
            MemoryGuarded: self._memory_guarded,
        }

    # -- the run's start and close ----------------------------------------------------------

    def start(self, info: RunInfo) -> None:
        self.info = info
        self._pipeline = self.export.pipeline()
        self._tracer = self._pipeline.provider.get_tracer("flowkit")
        self._offset = time.time_ns() - time.monotonic_ns()
        self._run: _Open | None = None
        self._by_path: dict[str, list[_Open]] = {}
        self._calls: dict[int, _Call] = {}
        self._traced: dict[str, int] = {}  # node name -> call spans made
        self._attempts: dict[tuple[str, int], int] = {}
        self._failed: dict[tuple[str, int], list[tuple[Any, int]]] = {}
        self._memo: dict[str, str] = {}

    def __call__(self, event: Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None and self._pipeline is not None:
            try:
                handler(event)
            except BaseException:
                self.close()  # the run drops this observer: stop its export thread first
                raise

    def close(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is None:
            return
        now = time.time_ns()
        for pending in self._failed.values():
            for span, end in pending:
                span.set_attribute("flowkit.outcome", "error")
                span.end(end_time=end)
        for opens in self._by_path.values():
            for o in reversed(opens):  # a cancelled run: what is open ends now
                o.span.set_status(Status(StatusCode.ERROR, "the run ended first"))
                o.span.end(end_time=now)
        if self._run is not None and self._run.span.is_recording():
            self._run.span.end(end_time=now)
        queue, stats = pipeline.queue, pipeline.stats
        stats.unsent = queue.close(self.export.flush_timeout_s)
        stats.spans, stats.exported = queue.spans, queue.exported
        stats.dropped, stats.failed, stats.error = queue.dropped, queue.failed, queue.error
        calls = sum(node.calls for node in self.info.nodes.values())
        stats.untraced_calls = max(0, calls - sum(self._traced.values()))
        self.export.last = stats
        report(stats, self.export.flush_timeout_s)

    # -- helpers ----------------------------------------------------------------------------

    def _ns(self, t: float) -> int:
        return int(t * 1e9) + self._offset

    def _r(self, text: str) -> str:
        """``text`` redacted (remembered: names and paths repeat)."""
        memo = self._memo
        clean = memo.get(text)
        if clean is None:
            clean = redact(text)
            if len(memo) < _MEMO_MAX:
                memo[text] = clean
        return clean

    def _attrs(self, raw: Mapping[str, Any]) -> Attributes:
        out: Attributes = {}
        for key, value in raw.items():
            if isinstance(value, bool | int | float):
                out[self._r(key)] = value
            else:
                out[self._r(key)] = self._r(str(value))
        return out

    def _span(
        self, name: str, parent: Any, start: float, attributes: Attributes | None = None
    ) -> Any:
        return self._tracer.start_span(
            self._r(name), context=parent, start_time=self._ns(start), attributes=attributes
        )

    def _node_for(self, path: str) -> _Open | None:
        """The open span of the node at ``path`` that the emitting task belongs to."""
        cur = self._current.get()
        if cur is not None and cur.path == path:
            return cur
        opens = self._by_path.get(path)
        if opens:
            return opens[-1]
        return cur if cur is not None else self._run

    def _within_budget(self, node: str) -> bool:
        budget = self.calls_per_node
        return budget is None or self._traced.get(node, 0) < budget

    # -- run, flows, nodes ------------------------------------------------------------------

    def _run_started(self, e: RunStarted) -> None:
        span = self._span(
            f"run {e.flow}",
            None,
            e.time,
            {"flowkit.run_id": self._r(e.run_id), "flowkit.flow": self._r(e.flow), KIND: "CHAIN"},
        )
        self._run = _Open(span, "", self._current.get())
        self._current.set(self._run)

    def _run_ended(self, e: RunEnded) -> None:
        run = self._run
        if run is None:
            return
        info, span = self.info, run.span
        nodes = info.nodes.values()
        span.set_attributes(
            {
                "flowkit.status": e.status,
                "flowkit.items": sum(n.items for n in nodes),
                "flowkit.failed": sum(n.failed for n in nodes),
                "flowkit.retries": sum(n.retries for n in nodes),
                "flowkit.wall_time_s": info.wall_time,
            }
        )
        for n in nodes:
            summary: Attributes = {
                "flowkit.node": self._r(n.name),
                "flowkit.items": n.items,
                "flowkit.failed": n.failed,
                "flowkit.retries": n.retries,
                "flowkit.calls.traced": self._traced.get(n.name, 0),
                "flowkit.peak_in_flight": n.peak_in_flight,
                "flowkit.wait_s": n.wait_s,
            }
            for key, value in n.usage.items():
                summary[self._r(f"flowkit.usage.{key}")] = value
            span.add_event(self._r(f"node {n.name}"), summary, self._ns(e.time))
        for name, lim in e.limiters.items():
            stats: Attributes = {"flowkit.limiter": self._r(name)}
            for key, value in dataclasses.asdict(lim).items():
                if isinstance(value, bool | int | float):
                    stats[f"flowkit.limiter.{key}"] = value
            span.add_event(self._r(f"limiter {name}"), stats, self._ns(e.time))
        if not e.ok:
            span.set_status(Status(StatusCode.ERROR, f"run {e.status}"))
        span.end(end_time=self._ns(e.time))
        self._current.set(run.prev)

    def _node_started(self, e: NodeStarted) -> None:
        parent = self._current.get() or self._run
        attrs: Attributes = {
            "flowkit.node.path": self._r(e.path),
            "flowkit.node": self._r(e.node),
            "flowkit.role": e.role,
            KIND: "CHAIN",
        }
        if e.role == "node":
            attrs["flowkit.executor"] = self._r(e.executor)
            if e.limit is not None:
                attrs["flowkit.limit"] = e.limit
        span = self._span(f"{e.role} {e.node}", parent.ctx if parent else None, e.time, attrs)
        o = _Open(span, e.path, self._current.get(), e.executor)
        self._by_path.setdefault(e.path, []).append(o)
        self._current.set(o)

    def _node_ended(self, e: NodeEnded) -> None:
        cur = self._current.get()
        opens = self._by_path.get(e.path)
        if not opens:
            return
        o = cur if cur is not None and cur in opens else opens[-1]
        opens.remove(o)
        if not opens:
            del self._by_path[e.path]
        for item in [k for k in self._failed if k[0] == e.path]:
            for span, end in self._failed.pop(item):
                span.set_attribute("flowkit.outcome", "error")
                span.end(end_time=end)
        span = o.span
        for key, value in o.usage.items():
            span.set_attribute(self._r(f"flowkit.usage.{key}"), value)
        if o.wait_s:
            span.set_attribute("flowkit.wait_s", o.wait_s)
        span.set_attribute("flowkit.ok", e.ok)
        if not e.ok:
            span.set_status(Status(StatusCode.ERROR, f"{e.role} {self._r(e.node)} failed"))
        span.end(end_time=self._ns(e.time))
        if cur is o:
            self._current.set(o.prev)

    def _batch_started(self, e: BatchStarted) -> None:
        o = self._node_for(e.path)
        if o is not None and e.items is not None:
            o.span.set_attribute("flowkit.batch.items", e.items)

    # -- exec calls -------------------------------------------------------------------------

    def _call_started(self, e: CallStarted) -> None:
        attempt = self._attempts.pop((e.path, e.index), 1)
        if attempt == 1 and not self._within_budget(e.node):
            return
        parent = self._node_for(e.path)
        if parent is None:
            return
        self._traced[e.node] = self._traced.get(e.node, 0) + 1
        self._calls[e.call] = _Call(e, parent, attempt)

    def _call_ended(self, e: CallEnded) -> None:
        call = self._calls.pop(e.call, None)
        if call is None:
            return
        attrs: Attributes = {
            "flowkit.node.path": self._r(call.path),
            "flowkit.node": self._r(call.node),
            "flowkit.item.index": call.index,
            "flowkit.attempt": call.attempt,
            "flowkit.executor": self._r(call.parent.executor),
            "flowkit.outcome": "ok" if e.ok else "error",
            KIND: "CHAIN",
        }
        for key, value in call.usage.items():
            attrs[self._r(f"flowkit.usage.{key}")] = value
        label = f"#{call.index}" if call.index >= 0 else "(batch)"  # a number: nothing to hide
        name = f"{self._r(f'exec {call.node}')} {label}"
        span = self._tracer.start_span(
            name, context=call.parent.ctx, start_time=self._ns(call.start), attributes=attrs
        )
        if call.children:
            ctx = trace.set_span_in_context(span)
            for name, start, end, child_attrs, ok in call.children:
                child = self._span(name, ctx, start, child_attrs)
                if not ok:
                    child.set_status(Status(StatusCode.ERROR))
                child.end(end_time=self._ns(end))
        if e.ok:
            span.end(end_time=self._ns(e.time))
            return
        span.set_status(Status(StatusCode.ERROR))
        self._failed.setdefault((e.path, e.index), []).append((span, self._ns(e.time)))

    def _call_retried(self, e: CallRetried) -> None:
        key = (e.path, e.index)
        self._attempts[key] = e.attempt + 1
        error = self._r(e.error)
        pending = self._failed.get(key)
        if pending:
            span, end = pending.pop()
            if not pending:
                del self._failed[key]
            span.set_attribute("flowkit.outcome", "retried")
            span.set_status(Status(StatusCode.ERROR, error))
            span.end(end_time=end)
        o = self._node_for(e.path)
        if e.wait > 0 and o is not None:
            attrs: Attributes = {
                "flowkit.node.path": self._r(e.path),
                "flowkit.item.index": e.index,
                "flowkit.attempt": e.attempt,
                "flowkit.wait": "retry backoff",
                "error.message": error,
            }
            wait = self._span("wait retry backoff", o.ctx, e.time, attrs)
            wait.end(end_time=self._ns(e.time + e.wait))

    def _item_failed(self, e: ItemFailed) -> None:
        message = self._r(f"{e.error_type}: {e.message}")
        pending = self._failed.get((e.path, e.index))
        if pending:
            span, end = pending.pop()
            if not pending:
                del self._failed[(e.path, e.index)]
            span.set_attributes(
                {
                    "flowkit.outcome": "failed",
                    "flowkit.attempts": e.attempts,
                    "error.type": self._r(e.error_type),
                }
            )
            span.set_status(Status(StatusCode.ERROR, message))
            span.end(end_time=end)
            return
        o = self._node_for(e.path)
        if o is not None:
            attrs: Attributes = {
                "flowkit.item.index": e.index,
                "flowkit.attempts": e.attempts,
                "error.type": self._r(e.error_type),
                "error.message": message,
            }
            o.span.add_event("item failed", attrs, self._ns(e.time))

    # -- inside a call: waits, operations, usage --------------------------------------------

    def _waited(self, e: Waited) -> None:
        attrs: Attributes = {
            "flowkit.node.path": self._r(e.path),
            "flowkit.item.index": e.index,
            "flowkit.wait": self._r(e.what),
        }
        if e.limiter is not None:
            attrs["flowkit.limiter"] = self._r(e.limiter)
        call = self._calls.get(e.call) if e.call >= 0 else None
        if call is not None:
            call.children.append((f"wait {e.what}", e.time - e.seconds, e.time, attrs, True))
            return
        o = self._node_for(e.path)
        if o is None:
            return
        o.wait_s += e.seconds
        if self._within_budget(e.node):
            span = self._span(f"wait {e.what}", o.ctx, e.time - e.seconds, attrs)
            span.end(end_time=self._ns(e.time))

    def _operation(self, e: Operation) -> None:
        attrs = self._attrs(e.attributes)
        attrs["flowkit.node.path"] = self._r(e.path)
        attrs["flowkit.item.index"] = e.index
        call = self._calls.get(e.call) if e.call >= 0 else None
        if call is not None:
            call.children.append((e.name, e.started, e.time, attrs, e.ok))
            return
        if e.index >= 0:
            return  # inside a call without a span of its own: its node counts it
        o = self._node_for(e.path)
        if o is not None:  # in prep or post
            span = self._span(e.name, o.ctx, e.started, attrs)
            if not e.ok:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=self._ns(e.time))

    def _usage(self, e: Usage) -> None:
        o = self._node_for(e.path)
        if o is not None:
            usage = o.usage
            for key, value in e.amounts.items():
                usage[key] = usage.get(key, 0.0) + value
        _, call_id = current_call.get()
        call = self._calls.get(call_id) if call_id >= 0 else None
        if call is not None:
            usage = call.usage
            for key, value in e.amounts.items():
                usage[key] = usage.get(key, 0.0) + value

    def _loop_blocked(self, e: LoopBlocked) -> None:
        o = self._node_for(e.path)
        if o is not None:
            attrs: Attributes = {
                "flowkit.hook": e.hook,
                "flowkit.seconds": e.seconds,
                "flowkit.threshold": e.threshold,
                "flowkit.where": self._r(e.where),
            }
            o.span.add_event("event loop blocked", attrs, self._ns(e.time))

    def _memory_guarded(self, e: MemoryGuarded) -> None:
        if self._run is not None:
            name = "memory guard engaged" if e.engaged else "memory guard released"
            self._run.span.add_event(name, {"flowkit.rss_mb": e.rss_mb}, self._ns(e.time))
