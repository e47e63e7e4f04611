"""The bounded queue between a run and its exporter: ended spans wait there, at most
``max_queue`` of them, and one daemon thread exports them in batches. The run never waits for
the exporter: a span that finds the queue full is dropped and counted.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections import deque
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import SpanProcessor

from flowkit.errors import FlowkitWarning
from flowkit.redact import redact

if TYPE_CHECKING:
    from flowkit.otel.export import ExportStats

THREAD_NAME = "flowkit-otel-export"


class SpanQueue(SpanProcessor):
    """An OpenTelemetry span processor: ended spans wait in a queue of at most ``max_queue``
    (one that finds it full is dropped and counted) and a daemon thread exports them in
    batches of ``batch_size``, every ``delay_s`` or as soon as a batch is full."""

    def __init__(
        self, exporter: Any, max_queue: int, batch_size: int, delay_s: float, owned: bool
    ) -> None:
        self.exporter, self.owned = exporter, owned
        self.max_queue, self.batch_size, self.delay_s = max_queue, batch_size, delay_s
        self._queue: deque[Any] = deque()
        self.spans = self.dropped = self.exported = self.failed = 0
        self.error = ""
        self._sending = 0
        self._wake = threading.Event()
        self._closing = self._abandoned = False
        self._thread = threading.Thread(target=self._work, name=THREAD_NAME, daemon=True)
        self._thread.start()

    # -- the SpanProcessor interface (called where spans end: the run's event loop) ---------

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: Any) -> None:
        self.spans += 1
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped += 1
            return
        queue.append(span)
        if len(queue) >= self.batch_size:
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        self.close(0.0)

    # -- the export thread ------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            self._wake.wait(self.delay_s)
            self._wake.clear()
            self._drain()
            if self._closing:
                return

    def _drain(self) -> None:
        queue, size = self._queue, self.batch_size
        while queue and not (self._closing and self._abandoned):
            batch: list[Any] = []
            with contextlib.suppress(IndexError):  # close() may empty the queue meanwhile
                while len(batch) < size:
                    batch.append(queue.popleft())
            if not batch:
                return
            self._sending = len(batch)
            try:
                ok = self.exporter.export(batch).name == "SUCCESS"
            except Exception as exc:  # an exporter that raises loses its batch, not the run
                ok = False
                self.error = f"{type(exc).__name__}: {exc}"
            if ok:
                self.exported += len(batch)
            else:
                self.failed += len(batch)
            self._sending = 0

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until every queued span was handed to the exporter."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        while (self._queue or self._sending) and self._thread.is_alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
            self._wake.set()
        return True

    def close(self, timeout_s: float) -> int:
        """Export what is queued, waiting at most ``timeout_s``; stop the thread. Returns
        the spans left unsent."""
        if self._closing:
            return 0
        self._closing = True
        self._wake.set()
        self._thread.join(max(timeout_s, 0.0))
        self._abandoned = True  # past the deadline: the thread sends no further batch
        unsent = len(self._queue) + self._sending
        self._queue.clear()
        if self.owned:
            with contextlib.suppress(Exception):  # the export is over either way
                self.exporter.shutdown()
        return unsent


class _ThreadFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != THREAD_NAME


def quiet_export_thread() -> None:
    """Silence the OTLP exporters' log lines that come from flowkit's export thread (only
    those: an application's own OpenTelemetry set-up keeps its logs)."""
    for name in (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry.exporter.otlp.proto.http._common",
        "opentelemetry.exporter.otlp.proto.http",
        "opentelemetry.exporter.otlp.proto.grpc.exporter",
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ThreadFilter) for f in logger.filters):
            logger.addFilter(_ThreadFilter())


def report(stats: ExportStats, flush_timeout_s: float) -> None:
    """One warning line when spans were lost, naming how many, why and the fix."""
    if not stats.lost:
        return
    why = []
    if stats.dropped:
        why.append(f"{stats.dropped} dropped because the export queue was full")
    if stats.failed:
        why.append(f"{stats.failed} not accepted by {stats.endpoint}")
    if stats.error:
        why.append(f"the exporter raised {stats.error}")
    if stats.unsent:
        why.append(f"{stats.unsent} still queued after the {flush_timeout_s:g} s flush deadline")
    warnings.warn(
        redact(
            f"flowkit: OpenTelemetry export lost {stats.lost} of {stats.spans} spans ("
            + "; ".join(why)
            + "); check that the endpoint is up, or raise OtelExport(max_queue=...) or lower "
            "item_spans"
        ),
        FlowkitWarning,
        stacklevel=2,
    )
