"""Run report: what each node did, how much of its work really overlapped, and why not more.

``ReportWriter`` records a run's item spans and waits from its events and, when the run
closes, writes ``report.json`` (the ``RunReport`` model), a self-contained ``report.html``
(inline CSS, JS and SVG) and, when matplotlib is installed, ``report.png``. Time an item spent
waiting (for a node limit, a named limiter, a worker, a retry's backoff), whether the runner
or code inside exec waited, is not running time: in-flight counts, speedup and the
timeline's lanes count running calls only, and waits are drawn apart. Every named limiter
gets a row: its limits, use, rate and waits. Statistics use every span; the timeline draws
at most ``max_bars`` of them (a uniform sample beyond that). Recording costs about 30 bytes
per item while the run lasts. Error messages and tracebacks are redacted.
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
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from flowkit.errors import FlowkitWarning
from flowkit.events import INSTANT, Event, Observer
from flowkit.limits import LimiterStats
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
BOUND_SHARE = 0.5
"""A limiter whose slots were all taken this share of its active time bounded its users."""


# -- the data model ---------------------------------------------------------------------------


class Bar(BaseModel):
    """One stretch of an exec call on the timeline; times are seconds from the run's start.

    ``kind`` "run" is a call running; "wait" is an item waiting for ``what`` (a limiter, the
    node's limit, a worker, a retry's backoff). Run and wait bars have lanes of their own.
    """

    node: str
    index: int
    lane: int
    start: float
    end: float
    ok: bool
    kind: Literal["run", "wait"] = "run"
    what: str = ""


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
    the running time of its exec calls (waits inside exec left out); ``busy_time`` is the
    time at least one was running. ``mean_in_flight`` (exec / busy) is the concurrency it
    achieved while working; ``speedup`` (exec / wall) is what that bought over running the
    same calls one after another. ``wait_time`` sums its items' waits; ``usage`` what its
    exec recorded (LLM calls, tokens, retries...); ``limiters`` the named limiters it took.
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
    wait_time: float = 0.0
    usage: dict[str, float] = {}
    limiters: list[str] = []


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
    segments: int = 0
    waits: int = 0
    wait_lanes: int = 0
    limiters: list[LimiterStats] = []

    @property
    def sampled(self) -> bool:
        """Whether the timeline draws a sample of the running stretches and waits."""
        running = sum(1 for b in self.bars if b.kind == "run")
        segments = self.segments or self.spans
        return running < segments or len(self.bars) - running < self.waits


# -- recording --------------------------------------------------------------------------------


@dataclass
class _NodeLog:
    """Running stretches, waits and counts of one node, in parallel arrays.

    ``starts``/``ends`` hold running stretches (an exec call minus the waits inside it);
    ``wait_*`` hold waits; ``spans`` counts exec calls.
    """

    name: str
    executor: str = "async"
    limit: int | None = None
    paths: dict[str, None] = field(default_factory=dict)
    starts: array[float] = field(default_factory=lambda: array("d"))
    ends: array[float] = field(default_factory=lambda: array("d"))
    index: array[int] = field(default_factory=lambda: array("q"))
    ok: bytearray = field(default_factory=bytearray)
    wait_starts: array[float] = field(default_factory=lambda: array("d"))
    wait_ends: array[float] = field(default_factory=lambda: array("d"))
    wait_index: array[int] = field(default_factory=lambda: array("q"))
    wait_what: array[int] = field(default_factory=lambda: array("l"))
    spans: int = 0
    first: float = math.inf
    last: float = -math.inf
    retries: int = 0
    failed: int = 0
    limiter_wait: dict[str, float] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
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
        self._inner: dict[tuple[str, int], list[tuple[float, float]]] = {}
        self._whats: dict[str, int] = {}
        self._blocks: list[LoopBlock] = []
        self._errors: list[ErrorEntry] = []
        self._limiters: list[LimiterStats] = []

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
        elif kind == "limiter_wait" or kind == "item_wait":
            self._wait(event)
        elif kind == "usage":
            usage = self._log(event.node).usage
            for name, amount in event.data.items():
                usage[name] = usage.get(name, 0.0) + amount
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
            self._limiters = list(event.data.get("limiters", {}).values())

    def _log(self, name: str) -> _NodeLog:
        log = self._nodes.get(name)
        if log is None:
            log = self._nodes[name] = _NodeLog(name)
        return log

    def _wait(self, event: Event) -> None:
        data = event.data
        seconds = data["seconds"]
        end = event.time - self._t0
        start = end - seconds
        log = self._log(event.node)
        name = data.get("limiter")
        if name is not None:
            log.limiter_wait[name] = log.limiter_wait.get(name, 0.0) + seconds
        what = data.get("what") or (f"limiter {name}" if name else "wait")
        code = self._whats.setdefault(what, len(self._whats))
        log.wait_starts.append(start)
        log.wait_ends.append(end)
        log.wait_index.append(event.index)
        log.wait_what.append(code)
        key = (event.path, event.index)
        if event.index >= 0 and key in self._open:  # waited inside the running exec call
            self._inner.setdefault(key, []).append((start, end))

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
        end = event.time - self._t0
        log = self._log(event.node)
        log.spans += 1
        log.first = min(log.first, start)
        log.last = max(log.last, end)
        inner = self._inner.pop(key, None) if self._inner else None
        for a, b in running(start, end, inner):
            log.starts.append(a)
            log.ends.append(b)
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
        logs = sorted(self._nodes.values(), key=lambda log: min([log.first, *log.wait_starts[:1]]))
        limiters = self._limiters
        nodes = [_summarise(log, limiters) for log in logs]
        whats = list(self._whats)
        run_bars = _bars(logs, self.max_bars, whats, wait=False)
        wait_bars = _bars(logs, self.max_bars, whats, wait=True)
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
            spans=sum(log.spans for log in logs),
            segments=sum(len(log.starts) for log in logs),
            waits=sum(len(log.wait_starts) for log in logs),
            lanes=assign_lanes(run_bars),
            wait_lanes=assign_lanes(wait_bars),
            bars=run_bars + wait_bars,
            blocks=self._blocks,
            error_count=sum(log.failed for log in logs),
            errors=errors,
            limiters=limiters,
        )


def running(
    start: float, end: float, waits: Sequence[tuple[float, float]] | None
) -> list[tuple[float, float]]:
    """The stretches of ``[start, end]`` not covered by ``waits``; a call that begins by
    waiting (within ``INSTANT``) waits from its start."""
    if not waits:
        return [(start, end)]
    out: list[tuple[float, float]] = []
    waits = sorted(waits)
    at = start
    if waits[0][0] - start < INSTANT:
        waits[0] = (start, waits[0][1])
    for a, b in waits:
        a, b = max(a, start), min(b, end)
        if a > at:
            out.append((at, a))
        at = max(at, b)
    if end > at or not out:
        out.append((at, max(at, end)))
    return out


def _summarise(log: _NodeLog, limiters: Sequence[LimiterStats]) -> NodeReport:
    peak, busy = overlap(log.starts, log.ends)
    exec_time = max(0.0, math.fsum(log.ends) - math.fsum(log.starts))
    wall = (log.last - log.first) if log.spans else 0.0
    waited = max(0.0, math.fsum(log.wait_ends) - math.fsum(log.wait_starts))
    node = NodeReport(
        name=log.name,
        paths=list(log.paths),
        executor=log.executor,
        limit=log.limit,
        items=log.spans - log.retries,
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
        wait_time=waited,
        usage=dict(log.usage),
        limiters=[lim.name for lim in limiters if log.name in lim.users],
    )
    node.findings = findings(node, limiters)
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


def bound_by(node: NodeReport, lim: LimiterStats) -> str | None:
    """How ``lim`` held ``node`` back, in words, or None when it did not."""
    waited = node.limiter_wait.get(lim.name, 0.0)
    if waited <= LIMITER_SHARE * max(node.exec_time, 1e-9) or waited <= 0:
        return None
    tail = f"; items waited {waited:.2f} s in all"
    if lim.max_concurrency and lim.full_share >= BOUND_SHARE:
        return (
            f"bounded by limiter {lim.name!r}: {lim.max_concurrency} of {lim.max_concurrency} "
            f"busy {100 * lim.full_share:.0f} % of the time" + tail
        )
    if lim.rpm and lim.achieved_rpm is not None and lim.achieved_rpm >= 0.8 * lim.rpm:
        return (
            f"paced by limiter {lim.name!r}: {lim.achieved_rpm:,.0f} calls/min of its "
            f"{lim.rpm:g} rpm" + tail
        )
    if lim.tpm and lim.achieved_tpm is not None and lim.achieved_tpm >= 0.8 * lim.tpm:
        return (
            f"paced by limiter {lim.name!r}: {lim.achieved_tpm:,.0f} tokens/min of its "
            f"{lim.tpm:g} tpm" + tail
        )
    return f"waited on limiter {lim.name!r}" + tail


def findings(node: NodeReport, limiters: Sequence[LimiterStats] = ()) -> list[str]:
    """Why a node's work did not overlap as much as it could, in plain words."""
    out: list[str] = []
    if node.loop_blocked > 0:
        out.append(
            f"blocked the event loop for {node.loop_blocked:.2f} s, so nothing else ran "
            'meanwhile: run its exec with executor="thread" (blocking I/O) or '
            'executor="process" (CPU-bound work)'
        )
    bounds = [text for lim in limiters if (text := bound_by(node, lim)) is not None]
    if node.limit is None or node.items < 2 or node.mean_in_flight >= UNDERUSE * node.limit:
        return out + bounds
    reasons: list[str] = []
    if node.loop_blocked > 0:
        reasons.append("the event loop was blocked")
    if bounds:
        reasons.extend(bounds)
    elif node.limiter_wait:
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
        f"achieved {node.mean_in_flight:.1f} running on average (peak {node.peak_in_flight}) "
        f"of a limit of {node.limit}: " + "; ".join(reasons)
    )
    return out


def _bars(logs: Sequence[_NodeLog], cap: int, whats: Sequence[str], *, wait: bool) -> list[Bar]:
    """Run (or wait) bars for every stretch, or a uniform sample of ``cap``; lanes come later."""
    columns = [
        (log.wait_starts, log.wait_ends, log.wait_index) if wait else
        (log.starts, log.ends, log.index)
        for log in logs
    ]
    total = sum(len(c[0]) for c in columns)
    picks: Iterable[int] = range(total)
    if total > cap:
        picks = sorted(random.Random(0).sample(range(total), cap))
    bars: list[Bar] = []
    offset, k = 0, 0
    for pick in picks:
        while pick >= offset + len(columns[k][0]):
            offset += len(columns[k][0])
            k += 1
        log, i = logs[k], pick - offset
        starts, ends, index = columns[k]
        bars.append(
            Bar(
                node=log.name,
                index=index[i],
                lane=0,
                start=starts[i],
                end=ends[i],
                ok=True if wait else bool(log.ok[i]),
                kind="wait" if wait else "run",
                what=whats[log.wait_what[i]] if wait else "",
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
    run_lanes = max(report.lanes, 1)
    lanes = run_lanes + (report.wait_lanes + 1 if report.wait_lanes else 0)
    notes = [lim.line() for lim in report.limiters]
    fig = Figure(figsize=(12, 1.6 + min(lanes, 40) * 0.18 + 0.22 * len(notes)), dpi=110)
    ax = fig.add_subplot()
    for block in report.blocks:
        ax.axvspan(block.start, block.start + block.seconds, color="#d62728", alpha=0.15, lw=0)
    run = [b for b in report.bars if b.kind == "run"]
    waits = [b for b in report.bars if b.kind == "wait"]

    def boxes(bars: list[Bar], first: int) -> list[list[tuple[float, float]]]:
        return [
            [
                (b.start, first + b.lane - 0.4),
                (b.end, first + b.lane - 0.4),
                (b.end, first + b.lane + 0.4),
                (b.start, first + b.lane + 0.4),
            ]
            for b in bars
        ]

    if run:  # one collection for all bars: a patch per bar is far too slow
        ax.add_collection(
            PolyCollection(
                boxes(run, 0),
                facecolors=[palette[b.node] for b in run],
                edgecolors=["white" if b.ok else "#d62728" for b in run],
                linewidths=0.6 if len(run) < 2000 else 0.0,
            )
        )
    if waits:
        ax.axhline(run_lanes, color="#9aa5b1", lw=0.8)
        ax.add_collection(
            PolyCollection(
                boxes(waits, run_lanes + 1),
                facecolors=[palette[b.node] for b in waits],
                alpha=0.3,
                hatch="///",
                edgecolors="#9aa5b1",
                linewidths=0.0,
            )
        )
    ax.set_ylim(lanes - 0.5, -0.5)
    ax.set_xlim(0, max(report.wall_time, 1e-3))
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("running" + (" | waiting (hatched)" if waits else ""))
    title = (
        f"{report.flow}: {report.spans:,} exec calls, at most {report.lanes} running at once"
    )
    if report.waits:
        title += f"; {report.waits:,} waits"
    ax.set_title(title + (" (sample)" if report.sampled else ""), loc="left")
    handles = [Patch(color=c, label=name) for name, c in palette.items()]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    for k, note in enumerate(notes):
        fig.text(0.01, 0.01 + 0.22 * k / fig.get_figheight(), note, fontsize="small")
    fig.tight_layout(rect=(0, 0.22 * len(notes) / fig.get_figheight(), 1, 1))
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
        limiters=_limiters_html(report),
        errors=_errors_html(report),
    )


def _timeline_note(report: RunReport) -> str:
    note = (
        f"{report.spans:,} exec calls; at most {report.lanes} running at once (one lane each)."
    )
    if report.waits:
        note += (
            f" Below the line, pale: {report.waits:,} waits (for a limiter, the node's "
            "limit, a worker or a retry's backoff), which count as waiting, not running."
        )
    if report.sampled:
        note += f" Showing a uniform sample of {len(report.bars):,}; the table counts all."
    if report.blocks:
        note += " Red bands: the event loop was blocked."
    return note


def timeline_svg(report: RunReport, palette: dict[str, str]) -> str:
    """Lanes of running calls, then lanes of waits, one bar per stretch, coloured by node."""
    run_lanes = max(report.lanes, 1)
    wait_top = run_lanes + 1 if report.wait_lanes else run_lanes  # a gap lane between them
    lanes = wait_top + report.wait_lanes
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
    if report.wait_lanes:
        y = _AXIS + (run_lanes + 0.5) * lane_h
        out.append(
            f'<line class="split" x1="0" x2="{_SVG_WIDTH}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="split" x="4" y="{y - 2:.1f}">running &#8593; waiting &#8595;</text>'
        )
    gap = 1.0 if lane_h >= 4 else 0.0
    for bar in report.bars:
        took = f"{bar.start:.3f} to {bar.end:.3f} s ({bar.end - bar.start:.3f} s)"
        item = f"item {bar.index}" if bar.index >= 0 else "an item"
        if bar.kind == "wait":
            label = f"{bar.node} {item} waiting for {bar.what}: {took}"
            cls, lane = "wait", wait_top + bar.lane
        else:
            label = f"{bar.node} {item} running: {took}{'' if bar.ok else ', failed'}"
            cls, lane = "bar" if bar.ok else "bar fail", bar.lane
        out.append(
            f'<rect class="{cls}" data-node="{html.escape(bar.node)}" '
            f'x="{x(bar.start)}" y="{_AXIS + lane * lane_h:.1f}" '
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
            f"<td>{f'{n.wait_time:.2f} s' if n.wait_time else '&ndash;'}</td>"
            f"<td>{waits or '&ndash;'}</td>"
            f'<td class="usage">{html.escape(usage_text(n.usage)) or "&ndash;"}</td>'
            "</tr>"
        )
    return "".join(rows)


def usage_text(usage: dict[str, float]) -> str:
    """What exec recorded, in short: LLM calls, tokens, retries, limiter wait, the rest."""
    parts = []
    rest = dict(usage)
    calls = rest.pop("calls", None)
    if calls is not None:
        parts.append(f"{calls:,.0f} calls")
    prompt, completion = rest.pop("prompt_tokens", None), rest.pop("completion_tokens", None)
    if prompt is not None or completion is not None:
        parts.append(f"{(prompt or 0) + (completion or 0):,.0f} tokens")
    retries = rest.pop("llm_retries", None)
    if retries is not None:
        parts.append(f"{retries:,.0f} retries")
    wait = rest.pop("limiter_wait_s", None)
    if wait is not None:
        parts.append(f"limiter wait {wait:.2f} s")
    rest.pop("latency_s", None)
    parts.extend(f"{k} {v:,.4g}" for k, v in sorted(rest.items()))
    return ", ".join(parts)


def _limiters_html(report: RunReport) -> str:
    if not report.limiters:
        return ""
    rows = []
    for lim in report.limiters:
        users = ", ".join(f"{html.escape(name)} ({how})" for name, how in lim.users.items())
        cap = lim.max_concurrency
        full = f"{100 * lim.full_share:.0f} %" if cap else "&ndash;"
        rows.append(
            "<tr>"
            f"<td>{html.escape(lim.name)}</td>"
            f"<td>{html.escape(lim.limits_text())}</td>"
            f"<td>{lim.calls:,}</td>"
            f"<td>{lim.mean_in_flight:.1f} / {lim.peak_in_flight} / {cap or '&ndash;'}</td>"
            f"<td>{full}</td>"
            f"<td>{html.escape(lim.rate_text())}</td>"
            f"<td>{lim.wait_s:.2f} s / {lim.mean_wait_s:.3f} s ({lim.waits:,} waited)</td>"
            f"<td>{users or '&ndash;'}</td>"
            "</tr>"
        )
    return (
        '<section id="limiters"><h2>Named limiters</h2><table><thead><tr><th>limiter</th>'
        "<th>limits</th><th>calls</th><th>in flight mean / peak / limit</th><th>all busy</th>"
        "<th>achieved rate</th><th>wait total / mean per call</th><th>used by</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


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
        caption="running: mean / peak / limit (waits left out); times in seconds",
        caption_justify="left",
    )
    table.add_column("node", no_wrap=True)
    for heading in ("exec on", "items", "failed", "retries", "wall", "exec", "speedup"):
        table.add_column(heading, justify="left" if heading == "exec on" else "right")
    table.add_column("running", justify="right", no_wrap=True)
    table.add_column("waited", justify="right")
    table.add_column("limiter wait")
    table.add_column("usage")
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
            f"{n.wait_time:.2f}" if n.wait_time else "-",
            ", ".join(f"{k} {v:.2f}" for k, v in n.limiter_wait.items()) or "-",
            usage_text(n.usage) or "-",
        )
    return table


def limiter_table(report: RunReport) -> Table | None:
    """The named limiters as a rich table, or None when the run had none."""
    from rich.table import Table

    if not report.limiters:
        return None
    table = Table(title="named limiters", title_justify="left")
    for heading in ("limiter", "limits", "calls", "in flight", "all busy", "rate", "waited"):
        table.add_column(heading, justify="left" if heading in ("limiter", "limits") else "right")
    table.add_column("used by")
    for lim in report.limiters:
        cap = lim.max_concurrency
        table.add_row(
            lim.name,
            lim.limits_text(),
            f"{lim.calls:,}",
            f"{lim.mean_in_flight:.1f} / {lim.peak_in_flight} / {cap or '-'}",
            f"{100 * lim.full_share:.0f} %" if cap else "-",
            lim.rate_text(),
            f"{lim.wait_s:.2f} s ({lim.waits:,} waits)",
            ", ".join(f"{name} ({how})" for name, how in lim.users.items()) or "-",
        )
    return table
