"""The observers a runner's options ask for: progress bars (``progress``), the run report
(``report``), the blocked-loop detector (``detect_blocking``) and OpenTelemetry export
(``otel``).

Installed as the runner's standard observers by the package's composition root; the
detector comes first, so its last findings reach the others when the run closes.
"""

from __future__ import annotations

from typing import Any

from flowkit.detector import BlockDetector
from flowkit.events import Subscriber
from flowkit.node import BaseNode
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
    if runner.progress:
        from flowkit.progress import Progress

        out.append(Progress())
    if runner.report is not None:
        from flowkit.report import ReportWriter

        out.append(ReportWriter(runner.report))
    if getattr(runner, "otel", None):
        from flowkit.otel import OtelExport

        observer = OtelExport.of(runner.otel).observer(info)
        if observer is not None:
            out.append(observer)
    return out
