"""The observers a runner's options ask for: progress (``progress``: bars on a terminal, a
live table in a notebook), the run report (``report``), the live view (``live``), the
blocked-loop detector (``detect_blocking``) and OpenTelemetry export (``otel``).

Installed as the runner's standard observers by the package's composition root; the
detector comes first, so its last findings reach the others when the run closes, and the
report's recorder closes before the live view, whose last page is that report. In a
notebook every run records its report, so its ``RunInfo`` shows it inline.
"""

from __future__ import annotations

import sys
from typing import Any

from flowkit.detector import BlockDetector
from flowkit.events import Subscriber
from flowkit.node import BaseNode
from flowkit.notebook import in_notebook
from flowkit.results import RunInfo


def standard_observers(
    runner: Any, flow: BaseNode, info: RunInfo, emit: Subscriber
) -> list[Subscriber]:
    """Observers for a run of ``flow`` by ``runner``, as its options say."""
    out: list[Subscriber] = []
    if runner.detect_blocking:
        settings = runner.settings
        detector = BlockDetector.for_run(
            flow,
            runner.detect_blocking,
            start_method=settings.start_method,
            emit=emit,
            limits=settings.node_limits,
        )
        if detector is not None:
            out.append(detector)
    notebook = in_notebook()
    progress = runner.progress
    if progress is None:
        progress = notebook or bool(sys.stderr and sys.stderr.isatty())
    if progress:
        if notebook:
            from flowkit.notebook import NotebookProgress

            out.append(NotebookProgress())
        else:
            from flowkit.progress import Progress

            out.append(Progress())
    live = getattr(runner, "live", None)
    if runner.report is not None or live is not None or notebook:
        from flowkit.report import ReportWriter
        from flowkit.report.inline import Remember

        writer = ReportWriter(runner.report)
        out += [writer, Remember(writer)]
        if live is not None:
            from flowkit.report.live import LiveView

            limits = runner.settings.named_limits
            out.append(LiveView(live.host, live.port, writer, limits, fallback=live.fallback))
    if getattr(runner, "otel", None):
        from flowkit.otel import OtelExport

        observer = OtelExport.of(runner.otel).observer(info)
        if observer is not None:
            out.append(observer)
    return out
