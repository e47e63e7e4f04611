"""The live view: a run's report served on a local web page while the run goes on.

``LiveView`` samples the run's own counts on a timer (calls running per node, a named
limiter's holders) into ``Gauge``s of at most ``BUCKETS`` stretches each, and while a page
is open renders the report's pieces from them (progress per node, the findings so far, the
concurrency chart, the node and limiter tables, the errors) and sends them to it as
server-sent events (``flowkit.serve``). Work per sample and per update is bounded by the
number of nodes, limiters and stretches, never by the number of items; nothing is rendered
while no page is open. When the run closes, the page is replaced by the final report,
which the run's ``ReportWriter`` recorded exactly.
"""

from __future__ import annotations

import asyncio
import html
import json
import string
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from flowkit.errors import FlowkitWarning
from flowkit.events import (
    Event,
    ItemFailed,
    LimiterChanged,
    NodeEnded,
    NodeStarted,
    Observer,
    Waited,
)
from flowkit.limits import RATE_WINDOW, Limit, LimiterStats
from flowkit.report.findings import findings
from flowkit.report.gauges import Gauge, LimiterState
from flowkit.report.model import NodeReport, RunReport
from flowkit.report.page import (
    colours,
    concurrency_html,
    errors_html,
    findings_html,
    limiters_html,
    nodes_html,
    render_html,
    stylesheet,
)
from flowkit.report.writer import MAX_ERRORS, ReportWriter
from flowkit.results import Counts, ErrorRecord, NodeStats, RunInfo
from flowkit.serve import PageServer

SAMPLE = 0.1
"""Seconds between samples of the run's counts."""
PUBLISH = 0.5
"""Seconds between updates sent to open pages."""
LINGER = 2.0
"""Seconds the end of a run waits, at most, for open pages to receive the final report."""
LIVE_NOTE = (
    "Live: calls running (for a limiter: its holders) are the run's own counts, sampled "
    "every {sample:g} s; the thin line above is each stretch's peak. Waits are drawn once "
    "they end. When the run ends, this page becomes the final report, drawn from every call."
)


class LiveView(Observer):
    """Serves the run's report at ``http://HOST:PORT/`` while it runs (see the module).

    ``recorder`` is the run's ``ReportWriter``, closed before this view: its report is the
    final page. ``limits`` are the runner's named limits. ``fallback``: a free port when
    ``port`` is taken (else the run goes on without a live view, with one warning).
    """

    def __init__(
        self,
        host: str,
        port: int,
        recorder: ReportWriter,
        limits: Mapping[str, Limit],
        *,
        fallback: bool = False,
        announce: Callable[[str], None] | None = None,
        sample: float = SAMPLE,
        publish: float = PUBLISH,
        linger: float = LINGER,
    ) -> None:
        self.host, self.port, self.fallback = host, port, fallback
        self.recorder, self.limits = recorder, limits
        self.announce = announce or _to_stderr
        self.sample_every, self.publish_every, self.linger = sample, publish, linger
        self.server: PageServer | None = None
        self.url = ""
        self._timer: asyncio.TimerHandle | None = None

    def start(self, info: RunInfo) -> None:
        self.info = info
        self._t0 = time.monotonic()
        self._started_at = datetime.now(UTC)
        self._gauges: dict[tuple[str, str], Gauge] = {}
        self._peaks: dict[str, int] = {}
        self._lims: dict[str, LimiterState] = {name: LimiterState() for name in self.limits}
        self._users: dict[str, dict[str, str]] = {name: {} for name in self.limits}
        self._paths: dict[str, int] = {}
        self._errors: list[ErrorRecord] = []
        self._published = float("-inf")
        try:
            self.server = PageServer(self.host, self.port, self._page, fallback=self.fallback)
        except OSError as exc:
            warnings.warn(
                f"flowkit: live view: cannot listen on {self.host}:{self.port} "
                f"({exc.strerror or exc}); the run goes on without it. Pass another port "
                "(--live PORT, Runner(live=PORT)), or 0 for any free one",
                FlowkitWarning,
                stacklevel=2,
            )
            return
        self.url = self.server.url
        self.announce(f"flowkit: live view of {info.flow or 'the run'} at {self.url}")
        self._timer = asyncio.get_running_loop().call_later(self.sample_every, self._tick)

    # -- events: waits, limiter holders, nodes starting and ending, failures --------------

    def __call__(self, event: Event) -> None:
        # one dict lookup for the events it ignores (exec calls: the recorder's)
        handle = _HANDLERS.get(type(event))
        if handle is not None and self.server is not None:
            handle(self, event)

    def _changed(self, event: LimiterChanged) -> None:
        lim = self._lims.get(event.limiter)
        if lim is not None:
            self._holders(lim, event)

    def _waited(self, event: Waited) -> None:
        start = event.time - event.seconds - self._t0
        self._gauge("node", event.node).waited(start, event.time - self._t0)
        if event.limiter is not None and event.limiter in self._lims:
            self._gauge("limiter", event.limiter).waited(start, event.time - self._t0)
            lim = self._lims[event.limiter]
            lim.waits += 1
            lim.wait_s += event.seconds
            self._users[event.limiter].setdefault(event.node, "waited")

    def _node_started(self, event: NodeStarted) -> None:
        if event.role == "node":
            self._paths[event.path] = self._paths.get(event.path, 0) + 1

    def _node_ended(self, event: NodeEnded) -> None:
        if event.role == "node" and event.path in self._paths:
            self._paths[event.path] -= 1

    def _failed(self, event: ItemFailed) -> None:
        if len(self._errors) < MAX_ERRORS:
            self._errors.append(ErrorRecord.failed(event))

    def _holders(self, lim: LimiterState, event: LimiterChanged) -> None:
        now = event.time
        if lim.first is None:
            lim.first = now
        else:
            dt = now - lim.last
            lim.area += lim.holders * dt
            cap = _cap(self.limits[event.limiter])
            if cap and lim.holders >= cap:
                lim.full += dt
        lim.last = now
        lim.holders = event.holders
        if event.taken:
            lim.calls += 1
            lim.peak = max(lim.peak, event.holders)
            lim.peak_since = max(lim.peak_since, event.holders)

    def _gauge(self, kind: str, name: str) -> Gauge:
        gauge = self._gauges.get((kind, name))
        if gauge is None:
            gauge = self._gauges[kind, name] = Gauge(self.sample_every)
        return gauge

    # -- the timer: sample, then (while a page is open) publish ----------------------------

    def _tick(self) -> None:
        try:
            now = time.monotonic()
            t = now - self._t0
            for name, stats in self.info.nodes.items():
                peak = stats.peak_in_flight
                rose = peak if peak > self._peaks.get(name, 0) else 0
                self._peaks[name] = peak
                if stats.in_flight or rose or (("node", name) in self._gauges):
                    self._gauge("node", name).sample(t, max(stats.in_flight, 0), rose)
            for name, lim in self._lims.items():
                if lim.first is not None:
                    self._gauge("limiter", name).sample(t, lim.holders, lim.peak_since)
                    lim.peak_since = lim.holders
            server = self.server
            due = now - self._published >= self.publish_every
            if server is not None and (server.requested.is_set() or (due and server.wanted)):
                self._published = now
                server.publish(self.body())
        except Exception as exc:  # a live view must never fail the run: it stops instead
            self._stop(f"flowkit: live view stopped: {type(exc).__name__}: {exc}")
            return
        self._timer = asyncio.get_running_loop().call_later(self.sample_every, self._tick)

    def _stop(self, why: str) -> None:
        warnings.warn(why, FlowkitWarning, stacklevel=2)
        if self.server is not None:
            self.server.close()
            self.server = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        server, self.server = self.server, None
        if server is None:
            return
        if not server.streams:  # no page open: nobody to hand the report to
            server.close()
            return
        try:
            report = self.recorder.report or self.recorder.build()
            document = render_html(report)
        except BaseException:
            server.close()
            raise
        server.finish(document, self.linger)

    # -- what a page shows ---------------------------------------------------------------

    def report(self) -> RunReport:
        """The report so far, from the samples (bounded work: no per-item data)."""
        now = time.monotonic() - self._t0
        lims = [self._limiter_stats(name, lim) for name, lim in self._lims.items()]
        used = [s for s in lims if s.calls or s.waits]
        nodes = [self._node(stats, used, now) for stats in self.info.nodes.values()]
        series = [
            g.series(name, "limiter", _cap(self.limits[name]), now)
            for (kind, name), g in self._gauges.items()
            if kind == "limiter"
        ]
        series += [
            g.series(name, "node", self.info.nodes[name].limit, now)
            for (kind, name), g in self._gauges.items()
            if kind == "node" and name in self.info.nodes
        ]
        return RunReport(
            run_id=self.info.run_id,
            flow=self.info.flow,
            ok=not any(n.failed for n in nodes),
            started_at=self._started_at,
            wall_time=now,
            nodes=nodes,
            spans=sum(s.calls for s in self.info.nodes.values()),
            lanes=0,
            bars=[],
            blocks=[],
            error_count=sum(n.failed for n in nodes),
            errors=list(self._errors),
            limiters=used,
            series=series,
        )

    def _node(self, stats: NodeStats, limiters: list[LimiterStats], now: float) -> NodeReport:
        gauge = self._gauges.get(("node", stats.name))
        exec_time, busy = gauge.running_time() if gauge is not None else (0.0, 0.0)
        node = NodeReport(
            name=stats.name,
            paths=list(stats.paths),
            executor=stats.executor,
            limit=stats.limit,
            items=stats.items,
            failed=stats.failed,
            retries=stats.retries,
            wall_time=busy,
            exec_time=exec_time,
            busy_time=busy,
            mean_in_flight=exec_time / busy if busy > 0 else 0.0,
            peak_in_flight=stats.peak_in_flight,
            speedup=exec_time / busy if busy > 0 else 0.0,
            limiter_wait=dict(stats.limiter_wait),
            loop_blocked=0.0,
            findings=[],
            wait_time=stats.wait_s,
            usage=dict(stats.usage),
            limiters=[lim.name for lim in limiters if stats.name in lim.users],
        )
        if stats.items >= 2:
            node.findings = findings(node, limiters)
        return node

    def _limiter_stats(self, name: str, lim: LimiterState) -> LimiterStats:
        limit = self.limits[name]
        active = lim.last - lim.first if lim.first is not None else 0.0
        users = self._users[name]
        for node, stats in self.info.nodes.items():
            if name in stats.limiter_wait:
                users.setdefault(node, "waited")
        return LimiterStats(
            name=name,
            max_concurrency=_cap(limit),
            rpm=_fixed(limit.rpm),
            tpm=_fixed(limit.tpm),
            calls=lim.calls,
            tokens=0.0,
            peak_in_flight=lim.peak,
            mean_in_flight=lim.area / active if active > 0 else float(lim.holders),
            full_share=lim.full / active if active > 0 else 0.0,
            active_s=active,
            achieved_rpm=(lim.calls - 1) * 60 / active
            if lim.calls > 1 and active >= RATE_WINDOW
            else None,
            achieved_tpm=None,
            waits=lim.waits,
            wait_s=lim.wait_s,
            mean_wait_s=lim.wait_s / lim.calls if lim.calls else 0.0,
            users=dict(users),
        )

    def body(self) -> str:
        """The page's ``<main>`` now: status, progress, findings, chart, tables, errors."""
        report = self.report()
        palette = colours([n.name for n in report.nodes])
        items = sum(n.items for n in report.nodes)
        data = {
            "elapsed": round(report.wall_time, 3),
            "items": items,
            "failed": report.error_count,
            "series": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "limit": s.limit,
                    "running": s.running[-1] if s.running else 0,
                    "peak": s.peak_running,
                }
                for s in report.series
            ],
        }
        clock = datetime.now().strftime("%H:%M:%S")
        meta = (
            f"run {report.run_id} · {report.wall_time:.1f} s so far · {items:,} items done · "
            f"{report.error_count:,} failed · updated {clock}"
        )
        return "".join(
            (
                f"<h1>{html.escape(report.flow)} <span class='status live'>running</span></h1>",
                f'<div class="meta">{html.escape(meta)}</div>',
                '<script type="application/json" id="live-data">',
                json.dumps(data).replace("</", "<\\/"),
                "</script>",
                self._progress_html(palette),
                findings_html(report),
                concurrency_html(
                    report, palette, zoom=False, note=LIVE_NOTE.format(sample=self.sample_every)
                ),
                nodes_html(report, palette),
                limiters_html(report),
                errors_html(report),
            )
        )

    def _progress_html(self, palette: dict[str, str]) -> str:
        rows = []
        now = time.monotonic() - self._t0
        for stats in self.info.nodes.values():
            paths: list[tuple[str, Counts | None]] = [*stats.paths.items()] or [(stats.name, None)]
            for path, counts in paths:
                done = counts.items if counts is not None else 0
                total = counts.total if counts is not None else 0
                active = self._paths.get(path, 0) > 0
                state = "running" if active else ("done" if path in self._paths else "waiting")
                width = 100.0 if state == "done" else 100 * done / total if total else 0.0
                pulse = " pulse" if active and not total else ""
                if pulse:
                    width = 100.0
                failed = counts.failed if counts is not None else 0
                running = f"{stats.in_flight:,} running" if active and len(stats.paths) == 1 else ""
                rate = f"{done / now:,.1f}/s" if done > 1 and now > 0 else ""
                depth = min(path.count("/"), 2)
                rows.append(
                    f'<tr><td class="name depth{depth}"><span class="swatch" style="background:'
                    f'{palette.get(stats.name, "#999")}"></span>{html.escape(path)}</td>'
                    f'<td class="bar"><span class="track"><span class="done{pulse}" '
                    f'style="width:{min(width, 100.0):.1f}%"></span></span></td>'
                    f"<td>{done:,}{f' / {total:,}' if total else ''}</td>"
                    f'<td class="{"bad" if failed else ""}">{failed:,} failed</td>'
                    f"<td>{running}</td><td>{rate}</td>"
                    f'<td class="state">{state}</td></tr>'
                )
        return (
            '<section class="progress"><h2>Progress</h2><table><thead><tr><th>node</th>'
            "<th>progress</th><th>done</th><th>failed</th><th>in flight</th><th>rate</th>"
            f"<th>state</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
        )

    def _page(self, body: str) -> str:
        template = resources.files("flowkit.templates").joinpath("live.html").read_text("utf-8")
        return string.Template(template).substitute(
            title=html.escape(f"flowkit live: {self.info.flow}"), style=stylesheet(), body=body
        )


_HANDLERS: dict[type, Callable[[LiveView, Any], None]] = {
    LimiterChanged: LiveView._changed,
    Waited: LiveView._waited,
    NodeStarted: LiveView._node_started,
    NodeEnded: LiveView._node_ended,
    ItemFailed: LiveView._failed,
}


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _cap(limit: Limit) -> int | None:
    """The most calls in flight a limit allows (an adaptive one's ceiling), if any."""
    cap = limit.ceiling or limit.max_concurrency
    return cap if isinstance(cap, int) else None


def _fixed(rate: float | str | None) -> float | None:
    """A rate the user fixed (None for none or ``"auto"``, whose pace only the limiter
    knows: the page after the run shows what it learned)."""
    return rate if isinstance(rate, int | float) else None
