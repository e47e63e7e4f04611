"""Run report: what each node did, how much of its work really overlapped, and why not more.

``ReportWriter`` (``writer``) records a run's item spans and waits from its events and, when
the run closes, writes ``report.json`` (the ``RunReport`` model, ``model``), a self-contained
``report.html`` (``page``) and, when matplotlib is installed, ``report.png`` (``files``);
``tables`` shows a report in a terminal.
"""

from __future__ import annotations

from flowkit.report.charts import concurrency_svg, timeline_svg
from flowkit.report.files import load_report, render_files, render_png, write_report
from flowkit.report.findings import BOUND_SHARE, LIMITER_SHARE, UNDERUSE, bound_by, findings
from flowkit.report.model import Bar, ErrorEntry, LoopBlock, NodeReport, RunReport, Series
from flowkit.report.page import colours, render_html, usage_text
from flowkit.report.tables import limiter_table, node_blocks, summary_table, table_fits
from flowkit.report.writer import (
    MAX_BARS,
    MAX_ERRORS,
    ReportWriter,
    assign_lanes,
    overlap,
    running,
)

__all__ = [
    "BOUND_SHARE",
    "LIMITER_SHARE",
    "MAX_BARS",
    "MAX_ERRORS",
    "UNDERUSE",
    "Bar",
    "ErrorEntry",
    "LoopBlock",
    "NodeReport",
    "ReportWriter",
    "RunReport",
    "Series",
    "assign_lanes",
    "bound_by",
    "colours",
    "concurrency_svg",
    "findings",
    "limiter_table",
    "load_report",
    "node_blocks",
    "overlap",
    "render_files",
    "render_html",
    "render_png",
    "running",
    "summary_table",
    "table_fits",
    "timeline_svg",
    "usage_text",
    "write_report",
]
