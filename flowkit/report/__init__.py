"""Run report: what each node did, how much of its work really overlapped, and why not more.

``ReportWriter`` (``writer``) records a run's calls and waits from its events and, when the
run closes, writes ``report.json`` (the ``RunReport`` model, ``model``), a self-contained
``report.html`` (``page``) and, when matplotlib is installed, ``report.png`` (``files``);
``tables`` shows a report in a terminal; ``load_report`` reads a report.json back. ``live``
serves the report on a local page while the run goes on (``Runner(live=PORT)``); ``inline``
renders a run's ``RunInfo`` as its report in a notebook.
"""

from __future__ import annotations

from flowkit.report.files import load_report
from flowkit.report.model import RunReport
from flowkit.report.writer import ReportWriter

__all__ = ["ReportWriter", "RunReport", "load_report"]
