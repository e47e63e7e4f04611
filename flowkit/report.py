"""Run report: what each node did, how much of its work really overlapped, and why not more.

``ReportWriter`` records a run's item spans from its events and, when the run closes, writes
``report.json`` (the ``RunReport`` model), a self-contained ``report.html`` (inline CSS, JS and
SVG) and, when matplotlib is installed, ``report.png``. Statistics use every span; the timeline
draws at most ``max_bars`` of them (a uniform sample beyond that). Recording costs about 30
bytes per item while the run lasts. Error messages and tracebacks are redacted.
"""

from __future__ import annotations

import colorsys
import html
import math
import random
import string
import time
import warnings
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from heapq import heappop, heappush
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from flowkit.errors import FlowkitWarning
from flowkit.events import Event, Observer
from flowkit.redact import redact

if TYPE_CHECKING:
    from rich.table import Table

    from flowkit.runner import RunInfo

MAX_BARS = 20_000
"""Item bars drawn on the timeline; beyond this many spans, a uniform sample is drawn."""
MAX_ERRORS = 100
"""Failed items listed in the report (the counts stay exact)."""
UNDERUSE = 0.5
"""A node whose mean in-flight stays below this share of its limit gets a finding."""
LIMITER_SHARE = 0.1
"""Limiter waits above this share of a node's exec time are named as a cause."""


# -- the data model ---------------------------------------------------------------------------


class Bar(BaseModel):
    """One exec call (an item's try) on the timeline; times are seconds from the run's start."""

    node: str
    index: int
    lane: int
    start: float
    end: float
    ok: bool


class LoopBlock(BaseModel):
    """The event loop was stuck in ``node``'s ``hook`` for ``seconds`` from ``start``, at
    ``where`` (file:line)."""

    node: str
    hook: str
    start: float
    seconds: float
    where: str


class ErrorEntry(BaseModel):
    """An item that failed for good (message and traceback redacted)."""

    node: str
    index: int
    error_type: str
    message: str
    attempts: int
    traceback: str = ""


class NodeReport(BaseModel):
    """One node over the run (every copy of it, at every path).

    ``wall_time`` runs from its first item's start to its last item's end; ``exec_time`` sums
    its exec calls; ``busy_time`` is the time at least one was in flight. ``mean_in_flight``
    (exec / busy) is the concurrency it achieved while working; ``speedup`` (exec / wall) is
    what that bought over running the same calls one after another.
    """

    name: str
    paths: list[str]
    executor: str
    limit: int | None
    items: int
    failed: int
    retries: int
    wall_time: float
    exec_time: float
    busy_time: float
    mean_in_flight: float
    peak_in_flight: int
    speedup: float
    limiter_wait: dict[str, float]
    loop_blocked: float
    findings: list[str]


class RunReport(BaseModel):
    """Everything ``report.json`` holds; ``flowkit report DIR`` renders the rest from it."""

    format: int = 1
    run_id: str
    flow: str
    ok: bool
    started_at: datetime
    wall_time: float
    nodes: list[NodeReport]
    spans: int
    lanes: int
    bars: list[Bar]
    blocks: list[LoopBlock]
    error_count: int
    errors: list[ErrorEntry]

    @property
    def sampled(self) -> bool:
        """Whether the timeline draws a sample of the spans rather than all of them."""
        return len(self.bars) < self.spans


# -- recording --------------------------------------------------------------------------------


@dataclass
class _NodeLog:
    """Spans and counts of one node; starts and ends are parallel arrays, one entry per span."""

    name: str
    executor: str = "async"
    limit: int | None = None
    paths: dict[str, None] = field(default_factory=dict)
    starts: array[float] = field(default_factory=lambda: array("d"))
    ends: array[float] = field(default_factory=lambda: array("d"))
    index: array[int] = field(default_factory=lambda: array("q"))
    ok: bytearray = field(default_factory=bytearray)
    retries: int = 0
    failed: int = 0
    limiter_wait: dict[str, float] = field(default_factory=dict)
    blocked: float = 0.0


class ReportWriter(Observer):
    """Records one run's events and writes its report into ``directory`` when the run closes.

    ``info`` (the run's ``RunInfo``) adds the tracebacks of items collected under
    ``on_error="collect"``. After the run, ``report`` holds the ``RunReport`` written.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        info: RunInfo | None = None,
        max_bars: int = MAX_BARS,
    ) -> None:
        self.directory = Path(directory)
        self.info = info
        self.max_bars = max_bars
        self.report: RunReport | None = None
        self._reset("")

    def _reset(self, run_id: str) -> None:
        self._run_id = run_id
        self._t0 = time.monotonic()
        self._started_at = datetime.now(UTC)
        self._flow = ""
        self._ok = False
        self._ended: float | None = None
        self._nodes: dict[str, _NodeLog] = {}
        self._open: dict[tuple[str, int], float] = {}
        self._stacked: dict[tuple[str, int], list[float]] = {}
        self._blocks: list[LoopBlock] = []
        self._errors: list[ErrorEntry] = []

    def start(self, run_id: str) -> None:
        self._reset(run_id)

    def __call__(self, event: Event) -> None:
        kind = event.kind
        if kind == "item_start":
            key = (event.path, event.index)
            if key in self._open:  # the same item of another copy of the node is in flight
                self._stacked.setdefault(key, []).append(self._open[key])
            self._open[key] = event.time - self._t0
        elif kind == "item_end":
            self._end(event)
        elif kind == "node_start":
            if event.data.get("role") == "node":
                log = self._log(event.node)
                log.executor = event.data.get("executor", log.executor)
                log.limit = event.data.get("limit")
                log.paths[event.path] = None
        elif kind == "item_retry":
            self._log(event.node).retries += 1
        elif kind == "item_error":
            self._error(event)
        elif kind == "limiter_wait":
            waits = self._log(event.node).limiter_wait
            name = event.data["limiter"]
            waits[name] = waits.get(name, 0.0) + event.data["seconds"]
        elif kind == "loop_blocked":
            seconds = event.data["seconds"]
            self._log(event.node).blocked += seconds
            start = event.time - self._t0
            self._blocks.append(
                LoopBlock(
                    node=event.node,
                    hook=event.data["hook"],
                    start=start,
                    seconds=seconds,
                    where=event.data["where"],
                )
            )
        elif kind == "run_start":
            self._flow = event.node
        elif kind == "run_end":
            self._ok = event.ok
            self._ended = event.time - self._t0

    def _log(self, name: str) -> _NodeLog:
        log = self._nodes.get(name)
        if log is None:
            log = self._nodes[name] = _NodeLog(name)
        return log

    def _end(self, event: Event) -> None:
        key = (event.path, event.index)
        start = self._open.pop(key, None)
        if start is None:
            return
        if self._stacked:
            older = self._stacked.get(key)
            if older:
                self._open[key] = older.pop()
                if not older:
                    del self._stacked[key]
        log = self._log(event.node)
        log.starts.append(start)
        log.ends.append(event.time - self._t0)
        log.index.append(event.index)
        log.ok.append(event.ok)

    def _error(self, event: Event) -> None:
        self._log(event.node).failed += 1
        if len(self._errors) < MAX_ERRORS:
            data = event.data
            self._errors.append(
                ErrorEntry(
                    node=event.node,
                    index=event.index,
                    error_type=str(data.get("error_type", "")),
                    message=redact(str(data.get("message", ""))),
                    attempts=int(data.get("attempts", 1)),
                )
            )

    def close(self) -> None:
        self.report = self.build()
        try:
            write_report(self.report, self.directory)
        except OSError as exc:
            if self._ok:
                raise
            # the run already failed: say so without hiding its own error
            warnings.warn(
                f"flowkit: could not write the run report: {exc}", FlowkitWarning, stacklevel=2
            )

    def build(self) -> RunReport:
        """The report of what was recorded so far."""
        logs = sorted(self._nodes.values(), key=lambda log: min(log.starts, default=math.inf))
        nodes = [_summarise(log) for log in logs]
        spans = sum(len(log.starts) for log in logs)
        bars = _bars(logs, self.max_bars)
        traces = {(r.node, r.index): r.traceback for r in (self.info.errors if self.info else [])}
        errors = [
            e.model_copy(update={"traceback": redact(traces.get((e.node, e.index), ""))})
            for e in self._errors
        ]
        return RunReport(
            run_id=self._run_id,
            flow=self._flow,
            ok=self._ok,
            started_at=self._started_at,
            wall_time=self._ended if self._ended is not None else time.monotonic() - self._t0,
            nodes=nodes,
            spans=spans,
            lanes=assign_lanes(bars),
            bars=bars,
            blocks=self._blocks,
            error_count=sum(log.failed for log in logs),
            errors=errors,
        )


def _summarise(log: _NodeLog) -> NodeReport:
    peak, busy = overlap(log.starts, log.ends)
    exec_time = max(0.0, math.fsum(log.ends) - math.fsum(log.starts))
    wall = (max(log.ends) - min(log.starts)) if log.starts else 0.0
    node = NodeReport(
        name=log.name,
        paths=list(log.paths),
        executor=log.executor,
        limit=log.limit,
        items=len(log.starts) - log.retries,
        failed=log.failed,
        retries=log.retries,
        wall_time=wall,
        exec_time=exec_time,
        busy_time=busy,
        mean_in_flight=exec_time / busy if busy > 0 else 0.0,
        peak_in_flight=peak,
        speedup=exec_time / wall if wall > 0 else 0.0,
        limiter_wait=dict(log.limiter_wait),
        loop_blocked=log.blocked,
        findings=[],
    )
    node.findings = findings(node)
    return node


def overlap(starts: Sequence[float], ends: Sequence[float]) -> tuple[int, float]:
    """Peak number of spans in flight at once, and the time at least one was in flight.

    A span ending at the instant another starts does not overlap it.
    """
    s, e = sorted(starts), sorted(ends)
    level = peak = j = 0
    busy = since = 0.0
    for start in s:
        while level > 0 and e[j] <= start:
            level -= 1
            if level == 0:
                busy += e[j] - since
            j += 1
        if level == 0:
            since = start
        level += 1
        peak = max(peak, level)
    if s:
        busy += e[-1] - since
    return peak, busy


def findings(node: NodeReport) -> list[str]:
    """Why a node's work did not overlap as much as its limit allowed, in plain words."""
    out: list[str] = []
    if node.loop_blocked > 0:
        out.append(
            f"blocked the event loop for {node.loop_blocked:.2f} s, so nothing else ran "
            'meanwhile: run its exec with executor="thread" (blocking I/O) or '
            'executor="process" (CPU-bound work)'
        )
    if node.limit is None or node.items < 2 or node.mean_in_flight >= UNDERUSE * node.limit:
        return out
    reasons: list[str] = []
    if node.loop_blocked > 0:
        reasons.append("the event loop was blocked")
    if node.limiter_wait:
        limiter, waited = max(node.limiter_wait.items(), key=lambda kv: kv[1])
        if waited > LIMITER_SHARE * node.exec_time:
            reasons.append(
                f"items waited {waited:.2f} s in all for limiter {limiter!r}, whose budget "
                "set the pace"
            )
    if node.items < node.limit and node.mean_in_flight >= UNDERUSE * node.items:
        reasons.append(f"only {node.items} items for a limit of {node.limit}")
    if not reasons and node.peak_in_flight <= 1:
        reasons.append(
            "items ran one at a time: this node class runs its batch sequentially "
            "(use AsyncParallelBatchNode, or an executor)"
        )
    if not reasons:
        reasons.append(
            "no cause seen: items may arrive slowly from prep, or a few slow items dominate"
        )
    out.append(
        f"achieved {node.mean_in_flight:.1f} in flight on average (peak {node.peak_in_flight}) "
        f"of a limit of {node.limit}: " + "; ".join(reasons)
    )
    return out


def _bars(logs: Sequence[_NodeLog], cap: int) -> list[Bar]:
    """Bars for every span, or for a uniform sample of ``cap`` of them; lanes assigned later."""
    total = sum(len(log.starts) for log in logs)
    picks: Iterable[int] = range(total)
    if total > cap:
        picks = sorted(random.Random(0).sample(range(total), cap))
    bars: list[Bar] = []
    offset, k = 0, 0
    for pick in picks:
        while pick >= offset + len(logs[k].starts):
            offset += len(logs[k].starts)
            k += 1
        log, i = logs[k], pick - offset
        bars.append(
            Bar(
                node=log.name,
                index=log.index[i],
                lane=0,
                start=log.starts[i],
                end=log.ends[i],
                ok=bool(log.ok[i]),
            )
        )
    return bars


def assign_lanes(bars: list[Bar]) -> int:
    """Put each bar in the lowest free lane (greedy interval packing); returns the lane count,
    which equals the most bars in flight at once."""
    busy: list[tuple[float, int]] = []
    free: list[int] = []
    lanes = 0
    for bar in sorted(bars, key=lambda b: (b.start, b.end)):
        while busy and busy[0][0] <= bar.start:
            heappush(free, heappop(busy)[1])
        if free:
            bar.lane = heappop(free)
        else:
            bar.lane, lanes = lanes, lanes + 1
        heappush(busy, (bar.end, bar.lane))
    return lanes


# -- files ------------------------------------------------------------------------------------

_png_note_given = False


def write_report(report: RunReport, directory: str | Path) -> list[Path]:
    """Write ``report.json``, ``report.html`` and (with matplotlib) ``report.png``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(report.model_dump_json(), encoding="utf-8")
    return [out / "report.json", *render_files(report, out)]


def render_files(report: RunReport, directory: str | Path) -> list[Path]:
    """Write the views of a report: ``report.html`` and, with matplotlib, ``report.png``."""
    out = Path(directory)
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
    written = [out / "report.html"]
    if render_png(report, out / "report.png"):
        written.append(out / "report.png")
    return written


def load_report(directory: str | Path) -> RunReport:
    """Read ``report.json`` back from a report directory."""
    text = (Path(directory) / "report.json").read_text(encoding="utf-8")
    return RunReport.model_validate_json(text)


def colours(names: Sequence[str]) -> dict[str, str]:
    """A distinct colour per node name, spread around the hue circle (golden angle)."""
    out = {}
    for i, name in enumerate(names):
        r, g, b = colorsys.hls_to_rgb((0.58 + i * 0.381966) % 1.0, 0.52, 0.62)
        out[name] = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
    return out


def render_png(report: RunReport, path: Path) -> bool:
    """Draw the timeline with matplotlib; False (and a one-time note) when it is missing."""
    global _png_note_given
    try:
        from matplotlib.collections import PolyCollection
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        if not _png_note_given:
            _png_note_given = True
            warnings.warn(
                "flowkit: report.png skipped; pip install 'flowkit[report]' adds it",
                FlowkitWarning,
                stacklevel=3,
            )
        return False
    palette = colours([n.name for n in report.nodes])
    lanes = max(report.lanes, 1)
    fig = Figure(figsize=(12, 1.6 + min(lanes, 40) * 0.18), dpi=110)
    ax = fig.add_subplot()
    for block in report.blocks:
        ax.axvspan(block.start, block.start + block.seconds, color="#d62728", alpha=0.15, lw=0)
    if report.bars:  # one collection for all bars: a patch per bar is far too slow
        bars = PolyCollection(
            [
                [
                    (b.start, b.lane - 0.4),
                    (b.end, b.lane - 0.4),
                    (b.end, b.lane + 0.4),
                    (b.start, b.lane + 0.4),
                ]
                for b in report.bars
            ],
            facecolors=[palette[b.node] for b in report.bars],
            edgecolors=["white" if b.ok else "#d62728" for b in report.bars],
            linewidths=0.6 if len(report.bars) < 2000 else 0.0,
        )
        ax.add_collection(bars)
    ax.set_ylim(lanes - 0.5, -0.5)
    ax.set_xlim(0, max(report.wall_time, 1e-3))
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("concurrency slot")
    title = f"{report.flow}: {report.spans:,} exec calls on {report.lanes} slots"
    ax.set_title(title + (" (sample)" if report.sampled else ""), loc="left")
    handles = [Patch(color=c, label=name) for name, c in palette.items()]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return True


# -- HTML -------------------------------------------------------------------------------------

_SVG_WIDTH = 1200
_AXIS = 26
_PAD = 18  # room for the first and last tick labels


def render_html(report: RunReport) -> str:
    """The report as one self-contained HTML page (no network assets)."""
    template = resources.files("flowkit.templates").joinpath("report.html").read_text("utf-8")
    palette = colours([n.name for n in report.nodes])
    status = "ok" if report.ok else "failed"
    items = sum(n.items for n in report.nodes)
    return string.Template(template).substitute(
        title=html.escape(f"flowkit report: {report.flow}"),
        flow=html.escape(report.flow),
        status=status,
        meta=html.escape(
            f"run {report.run_id} · started {report.started_at:%Y-%m-%d %H:%M:%S} UTC · "
            f"{report.wall_time:.2f} s · {len(report.nodes)} nodes · {items:,} items · "
            f"{report.error_count:,} failed"
        ),
        findings=_findings_html(report),
        legend=_legend_html(report, palette),
        timeline=timeline_svg(report, palette),
        timeline_note=html.escape(_timeline_note(report)),
        table=_table_html(report, palette),
        errors=_errors_html(report),
    )


def _timeline_note(report: RunReport) -> str:
    note = f"{report.spans:,} exec calls on {report.lanes} concurrency slots (lanes)."
    if report.sampled:
        note += f" Showing a uniform sample of {len(report.bars):,}; the table counts all."
    if report.blocks:
        note += " Red bands: the event loop was blocked."
    return note


def timeline_svg(report: RunReport, palette: dict[str, str]) -> str:
    """One lane per concurrency slot, one bar per exec call, coloured by node."""
    lanes = max(report.lanes, 1)
    lane_h = max(1.5, min(18.0, 480 / lanes))
    height = _AXIS + lanes * lane_h + 4
    span = max([report.wall_time, *(b.end for b in report.bars), 1e-3])
    scale = (_SVG_WIDTH - 2 * _PAD) / span

    def x(t: float) -> str:
        return f"{_PAD + t * scale:.2f}"

    out = [
        f'<svg id="timeline" viewBox="0 0 {_SVG_WIDTH} {height:.0f}" '
        f'preserveAspectRatio="none" role="img" aria-label="timeline of exec calls">'
    ]
    step = _tick_step(span)
    for k in range(int(span / step) + 1):
        t = k * step
        out.append(
            f'<line class="tick" x1="{x(t)}" x2="{x(t)}" y1="{_AXIS - 6}" y2="{height:.0f}"/>'
            f'<text class="tick" x="{x(t)}" y="{_AXIS - 10}">{t:g} s</text>'
        )
    for block in report.blocks:
        out.append(
            f'<rect class="blocked" x="{x(block.start)}" y="{_AXIS}" '
            f'width="{max(block.seconds * scale, 1):.2f}" height="{lanes * lane_h:.1f}">'
            f"<title>{html.escape(_block_label(block))}</title></rect>"
        )
    gap = 1.0 if lane_h >= 4 else 0.0
    for bar in report.bars:
        label = (
            f"{bar.node} item {bar.index}: {bar.start:.3f} to {bar.end:.3f} s "
            f"({bar.end - bar.start:.3f} s){'' if bar.ok else ', failed'}"
        )
        out.append(
            f'<rect class="bar{"" if bar.ok else " fail"}" data-node="{html.escape(bar.node)}" '
            f'x="{x(bar.start)}" y="{_AXIS + bar.lane * lane_h:.1f}" '
            f'width="{max((bar.end - bar.start) * scale, 0.6):.2f}" height="{lane_h - gap:.1f}" '
            f'fill="{palette[bar.node]}"><title>{html.escape(label)}</title></rect>'
        )
    out.append("</svg>")
    return "".join(out)


def _block_label(block: LoopBlock) -> str:
    return f"event loop blocked {block.seconds:.2f} s in {block.node}.{block.hook} ({block.where})"


def _tick_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about eight ticks."""
    raw = span / 8
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _legend_html(report: RunReport, palette: dict[str, str]) -> str:
    return "".join(
        f'<button class="key" data-focus="{html.escape(name)}">'
        f'<span class="swatch" style="background:{c}"></span>{html.escape(name)}</button>'
        for name, c in palette.items()
    )


def _findings_html(report: RunReport) -> str:
    rows = [
        f"<li><b>{html.escape(n.name)}</b>: {html.escape(text)}</li>"
        for n in report.nodes
        for text in n.findings
    ]
    if not rows:
        return ""
    return f'<section class="findings"><h2>Findings</h2><ul>{"".join(rows)}</ul></section>'


def _table_html(report: RunReport, palette: dict[str, str]) -> str:
    rows = []
    for n in report.nodes:
        waits = ", ".join(f"{html.escape(k)} {v:.2f} s" for k, v in n.limiter_wait.items())
        meter = ""
        if n.limit:
            mean = min(100.0, 100 * n.mean_in_flight / n.limit)
            peak = min(100.0, 100 * n.peak_in_flight / n.limit)
            meter = (
                f'<span class="meter" title="mean and peak in flight of the limit">'
                f'<span class="mean" style="width:{mean:.1f}%"></span>'
                f'<span class="peak" style="left:{peak:.1f}%"></span></span>'
            )
        rows.append(
            "<tr>"
            f'<td><span class="swatch" style="background:{palette[n.name]}"></span>'
            f'{html.escape(n.name)}<div class="paths">{html.escape(", ".join(n.paths))}</div></td>'
            f"<td>{html.escape(n.executor)}</td>"
            f"<td>{n.items:,}</td>"
            f'<td class="{"bad" if n.failed else ""}">{n.failed:,}</td>'
            f"<td>{n.retries:,}</td>"
            f"<td>{n.wall_time:.2f} s</td>"
            f"<td>{n.exec_time:.2f} s</td>"
            f"<td>{n.speedup:.1f}&times;</td>"
            f"<td>{n.mean_in_flight:.1f} / {n.peak_in_flight} / {n.limit or '&ndash;'}{meter}</td>"
            f"<td>{waits or '&ndash;'}</td>"
            "</tr>"
        )
    return "".join(rows)


def _errors_html(report: RunReport) -> str:
    if not report.errors:
        return ""
    items = []
    for e in report.errors:
        trace = f"<pre>{html.escape(e.traceback)}</pre>" if e.traceback else ""
        items.append(
            f"<details><summary><b>{html.escape(e.node)}</b> item {e.index} after "
            f"{e.attempts} attempt(s): {html.escape(e.error_type)}: {html.escape(e.message)}"
            f"</summary>{trace}</details>"
        )
    more = report.error_count - len(report.errors)
    tail = f"<p>… and {more:,} more.</p>" if more > 0 else ""
    return f"<section><h2>Errors ({report.error_count:,})</h2>{''.join(items)}{tail}</section>"


# -- terminal ---------------------------------------------------------------------------------


def summary_table(report: RunReport) -> Table:
    """The per-node numbers as a rich table (``flowkit report DIR`` prints it)."""
    from rich.table import Table

    status = "[green]ok[/]" if report.ok else "[red]failed[/]"
    table = Table(
        title=f"{report.flow}: {status} in {report.wall_time:.2f} s",
        title_justify="left",
        caption="in flight: mean / peak / limit; times in seconds",
        caption_justify="left",
    )
    table.add_column("node", no_wrap=True)
    for heading in ("exec on", "items", "failed", "retries", "wall", "exec", "speedup"):
        table.add_column(heading, justify="left" if heading == "exec on" else "right")
    table.add_column("in flight", justify="right", no_wrap=True)
    table.add_column("limiter wait")
    for n in report.nodes:
        table.add_row(
            n.name,
            n.executor,
            f"{n.items:,}",
            f"[red]{n.failed:,}[/]" if n.failed else "0",
            f"{n.retries:,}",
            f"{n.wall_time:.2f}",
            f"{n.exec_time:.2f}",
            f"{n.speedup:.1f}x",
            f"{n.mean_in_flight:.1f} / {n.peak_in_flight} / {n.limit or '-'}",
            ", ".join(f"{k} {v:.2f}" for k, v in n.limiter_wait.items()) or "-",
        )
    return table
