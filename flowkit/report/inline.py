"""A run's report inline, where a notebook shows a ``RunInfo`` (its ``_repr_html_``).

A run recorded by a ``ReportWriter`` (``report=``, ``live=``, or any run in a notebook)
leaves its report here, for as long as its ``RunInfo`` lives (``Remember``); the HTML is the
report page's own pieces (summary, findings, the concurrency chart, the node and limiter
tables, the errors) under a style scoped to them, so the notebook's own look is untouched.
A run recorded by none shows its summary and tables from the ``RunInfo``'s counts.
"""

from __future__ import annotations

import html
import itertools
import re
import time
import weakref
from datetime import UTC, datetime

from flowkit.events import Observer
from flowkit.report.model import NodeReport, RunReport
from flowkit.report.page import (
    colours,
    concurrency_html,
    errors_html,
    findings_html,
    limiters_html,
    meta_text,
    nodes_html,
    stylesheet,
)
from flowkit.report.writer import ReportWriter
from flowkit.results import RunInfo

SCOPE = ".flowkit-report"
_reports: dict[int, RunReport | ReportWriter] = {}
_uids = itertools.count(1)


def remember(info: RunInfo, report: RunReport | ReportWriter) -> None:
    """Keep ``report`` (or the writer that recorded it, to build it when first shown) as
    ``info``'s, until ``info`` is gone."""
    key = id(info)
    if key not in _reports:
        weakref.finalize(info, _reports.pop, key, None)
    _reports[key] = report


def recorded(info: RunInfo) -> RunReport | None:
    """The report recorded for ``info``, if any (built now if it was not yet)."""
    found = _reports.get(id(info))
    if isinstance(found, ReportWriter):
        found = _reports[id(info)] = found.report or found.build()
    return found


class Remember(Observer):
    """Keeps what ``writer`` recorded as the run's own, for ``RunInfo._repr_html_``."""

    wants_events = False

    def __init__(self, writer: ReportWriter) -> None:
        self.writer = writer
        self.info: RunInfo | None = None

    def start(self, info: RunInfo) -> None:
        self.info = info

    def close(self) -> None:
        if self.info is not None:
            remember(self.info, self.writer.report or self.writer)


def run_html(info: RunInfo) -> str:
    """``info``'s report as one HTML fragment, styled for itself alone."""
    report = recorded(info)
    note = ""
    if report is None:
        report = summary(info)
        if info.status != "running":
            note = (
                '<p class="note">The concurrency chart needs a recorded run: pass '
                "Runner(report=DIR) or live=, or run it in a notebook.</p>"
            )
    palette = colours([n.name for n in report.nodes])
    uid = f"fk{next(_uids)}-"
    status = "ok" if info.ok else "failed" if info.status == "done" else info.status
    badge = "ok" if status == "ok" else "live" if status == "running" else "failed"
    return "".join(
        (
            f'<div class="{SCOPE[1:]}"><style>{scoped(stylesheet(), SCOPE)}',
            f"{SCOPE} .status.live {{ background: #2f6fd6; }}</style>",
            f'<h1>{html.escape(report.flow or "run")} <span class="status {badge}">'
            f"{html.escape(status)}</span></h1>",
            f'<div class="meta">{html.escape(meta_text(report))}</div>',
            note,
            findings_html(report),
            concurrency_html(report, palette, zoom=False, uid=uid),
            nodes_html(report, palette),
            limiters_html(report),
            errors_html(report),
            "</div>",
        )
    )


def summary(info: RunInfo) -> RunReport:
    """A report of ``info``'s own counts (no timings or chart: nothing recorded them)."""
    nodes = [
        NodeReport(
            name=s.name,
            paths=list(s.paths),
            executor=s.executor,
            limit=s.limit,
            items=s.items,
            failed=s.failed,
            retries=s.retries,
            wall_time=0.0,
            exec_time=0.0,
            busy_time=0.0,
            mean_in_flight=0.0,
            peak_in_flight=s.peak_in_flight,
            speedup=0.0,
            limiter_wait=dict(s.limiter_wait),
            loop_blocked=0.0,
            findings=[],
            wait_time=s.wait_s,
            usage=dict(s.usage),
        )
        for s in info.nodes.values()
    ]
    wall = info.wall_time or (time.time() - info.started if info.status == "running" else 0.0)
    return RunReport(
        run_id=info.run_id,
        flow=info.flow,
        ok=info.ok,
        started_at=datetime.fromtimestamp(info.started, UTC),
        wall_time=wall,
        nodes=nodes,
        spans=sum(s.calls for s in info.nodes.values()),
        lanes=0,
        bars=[],
        blocks=[],
        error_count=sum(n.failed for n in nodes),
        errors=list(info.errors),
        limiters=list(info.limiters.values()),
    )


_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
_WHOLE = {":root", "body", "main", "html"}


def scoped(css: str, scope: str) -> str:
    """``css`` (plain rules, no @-rules) applied only inside ``scope``: each selector is
    prefixed with it; ``:root``, ``html``, ``body`` and ``main`` become the scope itself."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    out = []
    for selectors, body in _RULE.findall(css):
        names = []
        for sel in selectors.split(","):
            sel = " ".join(sel.split())
            names.append(scope if sel in _WHOLE else f"{scope} {sel}")
        out.append(f"{', '.join(names)} {{{' '.join(body.split())}}}")
    return "\n".join(out)
