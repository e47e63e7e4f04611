"""Where a run's spans go: ``OtelExport`` (the settings behind ``Runner(otel=...)``) and the
OTLP/HTTP exporter the standard ``OTEL_EXPORTER_OTLP_*`` variables configure.

Spans wait for export in a bounded queue (``flowkit.otel.queue``): one that finds it full is
dropped and counted, and so is a batch the endpoint refused and what is still queued when the
run's flush deadline passes. The counts land in ``OtelExport.last`` and, when any span was
lost, in one warning line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flowkit.errors import ConfigError
from flowkit.redact import add_secret, redact

if TYPE_CHECKING:
    from flowkit.otel.queue import SpanQueue
    from flowkit.otel.spans import OtelObserver
    from flowkit.results import RunInfo

DEFAULT_ENDPOINT = "http://localhost:4318"
TRACES_PATH = "/v1/traces"


@dataclass
class ExportStats:
    """What one run's export did: spans made, sent, and lost (and why)."""

    endpoint: str
    spans: int = 0
    exported: int = 0
    dropped: int = 0
    """Spans that found the queue full."""
    failed: int = 0
    """Spans in batches the endpoint did not accept (unreachable, refused)."""
    unsent: int = 0
    """Spans still queued when the flush deadline passed."""
    error: str = ""
    """The last error an exporter raised, if one did."""
    untraced_calls: int = 0
    """Exec calls past ``item_spans`` per node: counted on their node's span, no span of their
    own."""

    @property
    def lost(self) -> int:
        return self.dropped + self.failed + self.unsent


@dataclass
class OtelExport:
    """How ``Runner(otel=...)`` exports a run as OpenTelemetry traces.

    ``endpoint`` is an OTLP/HTTP URL (a base such as ``http://localhost:6006``, or the full
    ``.../v1/traces``); None takes ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, else http://localhost:4318. Headers, timeout and
    compression come from the other ``OTEL_EXPORTER_OTLP_*`` variables, the service name from
    ``OTEL_SERVICE_NAME`` (default "flowkit"). ``item_spans`` bounds the exec calls per node
    that get a span of their own (None: every one); the others are counted on the node's
    span, and retries and failures always get one. ``max_queue`` spans wait for export at
    most (more are dropped and counted); ``flush_timeout_s`` is how long the end of a run
    waits for the last ones. ``exporter`` replaces the OTLP exporter with any OpenTelemetry
    ``SpanExporter`` (flowkit does not shut down one it was given).
    """

    endpoint: str | None = None
    item_spans: int | None = 1000
    max_queue: int = 4096
    batch_size: int = 512
    schedule_delay_s: float = 1.0
    flush_timeout_s: float = 5.0
    service_name: str | None = None
    exporter: Any = None
    last: ExportStats | None = field(default=None, repr=False)
    """The counts of the run that ended last."""

    def __post_init__(self) -> None:
        if self.endpoint is not None and not str(self.endpoint).startswith(("http://", "https://")):
            raise ConfigError(
                f"OtelExport endpoint: expected an OTLP/HTTP URL such as {DEFAULT_ENDPOINT}, "
                f"got {self.endpoint!r}"
            )
        for name in ("max_queue", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"OtelExport {name} must be a positive int, got {value!r}")
        spans = self.item_spans
        if spans is not None and (
            isinstance(spans, bool) or not isinstance(spans, int) or spans < 0
        ):
            raise ConfigError(f"OtelExport item_spans must be an int >= 0 or None, got {spans!r}")

    @classmethod
    def of(cls, option: Any) -> OtelExport:
        """The export ``Runner(otel=option)`` asks for: True, a URL, or an ``OtelExport``."""
        if isinstance(option, OtelExport):
            return option
        return cls(endpoint=option if isinstance(option, str) else None)

    def traces_url(self) -> str:
        """The URL spans are posted to."""
        if self.endpoint is not None:
            return with_traces_path(self.endpoint)
        env = os.environ
        traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        if traces:
            return traces
        return with_traces_path(
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
        )

    def observer(self, info: RunInfo) -> OtelObserver | None:
        """The observer that exports the run of ``info``; None when ``OTEL_SDK_DISABLED``."""
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        from flowkit.otel.spans import OtelObserver

        return OtelObserver(self)

    def pipeline(self) -> Pipeline:
        """A tracer provider feeding a fresh ``SpanQueue`` (one per run)."""
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        from flowkit.otel.queue import SpanQueue, quiet_export_thread

        secret_headers()
        quiet_export_thread()
        exporter, owned = self.exporter, False
        url = "the given exporter"
        if exporter is None:
            exporter, owned, url = otlp_exporter(self), True, self.traces_url()
        attributes: dict[str, Any] = {}
        if self.service_name is not None or not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = self.service_name or "flowkit"
        resource = Resource.create(attributes)
        resource = Resource(
            {k: redact(v) if isinstance(v, str) else v for k, v in resource.attributes.items()}
        )
        queue = SpanQueue(exporter, self.max_queue, self.batch_size, self.schedule_delay_s, owned)
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        provider.add_span_processor(queue)
        return Pipeline(provider, queue, ExportStats(redact(url)))


@dataclass
class Pipeline:
    """One run's provider, queue and counts."""

    provider: Any
    queue: SpanQueue
    stats: ExportStats


def with_traces_path(url: str) -> str:
    """``url`` with ``/v1/traces`` appended when it names no path (a collector's base URL)."""
    url = url.rstrip("/")
    return url if urlsplit(url).path not in ("", "/") else url + TRACES_PATH


def secret_headers() -> None:
    """The values of ``OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`` (API keys, mostly) are secrets."""
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        for pair in os.environ.get(name, "").split(","):
            _, eq, value = pair.partition("=")
            if eq:
                add_secret(value.strip())
                add_secret(value.strip().removeprefix("Bearer%20").removeprefix("Bearer "))


def otlp_exporter(export: OtelExport) -> Any:
    """The OTLP exporter the settings and environment ask for (HTTP/protobuf, or gRPC when
    ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` says grpc)."""
    from flowkit.extras import require

    env = os.environ
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or ""
    ).strip()
    if protocol == "grpc" and export.endpoint is None:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError:
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the 'opentelemetry-exporter-otlp-proto-"
                "grpc' package: pip install opentelemetry-exporter-otlp-proto-grpc, or export "
                "over http/protobuf"
            ) from None
        return OTLPSpanExporter()
    http = require(
        "opentelemetry.exporter.otlp.proto.http.trace_exporter", "OpenTelemetry export", "otel"
    )
    return http.OTLPSpanExporter(endpoint=export.traces_url())
