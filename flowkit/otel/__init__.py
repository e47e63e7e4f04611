"""OpenTelemetry export: a run as one trace in the tracing UI its users already watch.

``Runner(otel=True)``, ``Runner(otel="http://localhost:6006")`` or ``flowkit run ... --otel
[URL]`` send each run as a span tree (the run, its flows and nodes, each item's exec call,
and the LLM requests and waits inside it) over OTLP/HTTP; ``OtelExport`` holds the finer
settings. Needs the ``otel`` extra (``pip install 'flowkit[otel]'``), imported only when
export is on.
"""

from __future__ import annotations

from flowkit.otel.export import ExportStats, OtelExport

__all__ = ["ExportStats", "OtelExport"]
