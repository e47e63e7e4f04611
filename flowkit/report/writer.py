"""Run report: what each node did, how much of its work really overlapped, and why not more.

``ReportWriter`` records a run's item spans and waits from its events and, when the run closes,
writes ``report.json`` (the ``RunReport`` model), a self-contained ``report.html`` (inline CSS, JS
and SVG) and, when matplotlib is installed, ``report.png``. Time an item spent waiting (for a node
limit, a named limiter, a worker, a retry's backoff), whether the runner or code inside exec
waited, is not running time: in-flight counts, speedup and the timeline's lanes count running calls
only, and waits are drawn apart. Every named limiter gets a row: its limits, use, rate and waits.
Statistics use every span; the timeline draws at most ``max_bars`` of them (a uniform sample beyond
that). Recording costs about 30 bytes per item while the run lasts; error messages and tracebacks
are redacted.

The "concurrency over time" series (``series``) count each node's running and waiting calls
and each named limiter's holders and waits exactly, from the run's events: every exec call
and wait carries the call it belongs to, and every change in a limiter's holders is an event
(``LimiterChanged``). A run without those events (a hand-fed writer) estimates a limiter's
holders from the running calls of the nodes that take it, and the page says so.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from heapq import heappop, heappush
from pathlib import Path

from flowkit.errors import FlowkitWarning
from flowkit.events import (
    INSTANT,
    CallEnded,
    CallStarted,
    Event,
    ItemFailed,
    ItemPosted,
    LimiterChanged,
    LoopBlocked,
    NodeStarted,
    Observer,
    RunEnded,
    RunStarted,
    Waited,
)
from flowkit.limits import LimiterStats
from flowkit.pauses import own_time
from flowkit.redact import redact
from flowkit.report.files import write_report
from flowkit.report.findings import findings
from flowkit.report.model import Bar, LoopBlock, Mark, NodeReport, RunReport, Series
from flowkit.report.series import Spans, series
from flowkit.results import ErrorRecord, NodeStats, RunInfo

MAX_BARS = 20_000
"""Item bars drawn on the timeline; beyond this many stretches, a uniform sample is drawn."""
MAX_ERRORS = 100
"""Failed items listed in the report (the counts stay exact)."""
QUEUES = frozenset({"node limit", "worker", "batch", "thread pool", "event loop"})
"""Waits of an item queued behind its node's own pool or limit (not a named limiter)."""
QUEUE_BARS = 4
"""A node's queued items are drawn as bars only while at most this many (or its running
peak, if more) queue at once; beyond that the concurrency chart shows them, not the bars."""


@dataclass
class _NodeLog:
    """Running stretches and waits of one node, in parallel arrays.

    ``starts``/``ends`` hold running stretches (an exec call minus the waits inside it);
    ``wait_*`` hold waits. Counts (items, retries, failures) are the run's own.
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
    calls: int = 0
    first: float = math.inf
    last: float = -math.inf
    blocked: float = 0.0


class ReportWriter(Observer):
    """Records one run's calls and waits from its events and writes its report into
    ``directory`` when the run closes; after the run, ``report`` holds the ``RunReport``.
    With ``directory`` None it only records: ``build()`` gives the report when wanted (the
    live view's last page, a notebook's inline report).

    Each exec call is followed by its call id, so a wait recorded inside exec is cut out of
    exactly the call it happened in, however many copies of the node run the same item at
    the same path at once (parallel sub-flows). Counts come from the run's ``RunInfo``.
    """

    def __init__(self, directory: str | Path | None, *, max_bars: int = MAX_BARS) -> None:
        self.directory = None if directory is None else Path(directory)
        self.max_bars = max_bars
        self.report: RunReport | None = None
        self._reset(RunInfo(run_id="", started=time.time()))

    def _reset(self, info: RunInfo) -> None:
        self.info = info
        self._t0 = time.monotonic()
        self._started_at = datetime.now(UTC)
        self._flow = info.flow
        self._ok = False
        self._status = ""
        self._marks: list[Mark] = []
        self._ended: float | None = None
        self._nodes: dict[str, _NodeLog] = {}
        self._open: dict[int, tuple[float, int]] = {}
        self._inner: dict[int, list[tuple[float, float]]] = {}
        self._whats: dict[str, int] = {}
        self._blocks: list[LoopBlock] = []
        self._errors: list[ErrorRecord] = []
        self._limiters: list[LimiterStats] = []
        self._limiter_waits: dict[str, tuple[array[float], array[float]]] = {}
        self._holds: dict[str, tuple[array[float], array[float]]] = {}

    def start(self, info: RunInfo) -> None:
        self._reset(info)

    def __call__(self, event: Event) -> None:
        if isinstance(event, CallStarted):
            self._open[event.call] = (event.time - self._t0, event.index)
        elif isinstance(event, CallEnded):
            self._end(event)
        elif isinstance(event, Waited):
            self._wait(event)
        elif isinstance(event, LimiterChanged):
            starts, ends = self._holds.setdefault(event.limiter, (array("d"), array("d")))
            (starts if event.taken else ends).append(event.time - self._t0)
        elif isinstance(event, NodeStarted):
            if event.role == "node":
                log = self._log(event.node)
                log.executor, log.limit = event.executor, event.limit
                log.paths[event.path] = None
        elif isinstance(event, ItemFailed):
            self._error(event)
        elif isinstance(event, LoopBlocked):
            self._log(event.node).blocked += event.seconds
            start = event.time - self._t0
            self._blocks.append(
                LoopBlock(
                    node=event.node,
                    hook=event.hook,
                    start=start,
                    seconds=event.seconds,
                    where=event.where,
                )
            )
        elif isinstance(event, ItemPosted):
            if len(self._marks) < self.max_bars:
                at = event.time + event.seconds - self._t0
                self._marks.append(Mark(node=event.node, index=event.index, at=at))
        elif isinstance(event, RunStarted):
            self._flow = event.flow
        elif isinstance(event, RunEnded):
            self._ok = event.ok
            self._status = event.status
            self._ended = event.time - self._t0
            self._limiters = list(event.limiters.values())

    def _log(self, name: str) -> _NodeLog:
        log = self._nodes.get(name)
        if log is None:
            log = self._nodes[name] = _NodeLog(name)
        return log

    def _wait(self, event: Waited) -> None:
        end = event.time - self._t0
        start = end - event.seconds
        log = self._log(event.node)
        if event.limiter is not None:
            starts, ends = self._limiter_waits.setdefault(event.limiter, (array("d"), array("d")))
            starts.append(start)
            ends.append(end)
        code = self._whats.setdefault(event.what, len(self._whats))
        log.wait_starts.append(start)
        log.wait_ends.append(end)
        log.wait_index.append(event.index)
        log.wait_what.append(code)
        if event.call in self._open:  # waited inside the running exec call
            self._inner.setdefault(event.call, []).append((start, end))

    def _end(self, event: CallEnded) -> None:
        opened = self._open.pop(event.call, None)
        if opened is None:
            return
        start, index = opened
        end = event.time - self._t0
        log = self._log(event.node)
        log.calls += 1
        log.first = min(log.first, start)
        log.last = max(log.last, end)
        inner = self._inner.pop(event.call, None) if self._inner else None
        for a, b in running(start, end, inner, self._t0):
            log.starts.append(a)
            log.ends.append(b)
            log.index.append(index)
            log.ok.append(event.ok)

    def _error(self, event: ItemFailed) -> None:
        if len(self._errors) < MAX_ERRORS:
            self._errors.append(ErrorRecord.failed(event))

    def close(self) -> None:
        if self.directory is None:
            return
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
        stats = self.info.nodes
        nodes = [_summarise(log, stats.get(log.name), limiters) for log in logs]
        whats = list(self._whats)
        run_bars = _bars(logs, self.max_bars, whats, wait=False)
        hidden = _crowded_queues(logs, nodes, whats)
        wait_bars = _bars(logs, self.max_bars, whats, wait=True, hidden=hidden)
        traces = {(r.node, r.index): r.traceback for r in self.info.errors}
        errors = [
            e.model_copy(update={"traceback": redact(traces.get((e.node, e.index), ""))})
            for e in self._errors
        ]
        wall = self._ended if self._ended is not None else time.monotonic() - self._t0
        failed = sum(n.failed for n in nodes)
        return RunReport(
            run_id=self.info.run_id,
            flow=self._flow,
            ok=self._ok and not failed,  # as RunInfo.ok: a run with failed items is not ok
            started_at=self._started_at,
            wall_time=wall,
            nodes=nodes,
            spans=sum(log.calls for log in logs),
            segments=sum(len(log.starts) for log in logs),
            waits=sum(len(log.wait_starts) for log in logs),
            queued=sum(len(skip) for skip in hidden.values()),
            lanes=assign_lanes(run_bars),
            wait_lanes=assign_lanes(wait_bars),
            bars=run_bars + wait_bars,
            blocks=self._blocks,
            error_count=failed,
            errors=errors,
            limiters=limiters,
            series=self._series(logs, wall),
            status=self._status,
            budgets=list(self.info.budgets.values()),
            marks=self._marks,
        )

    def _series(self, logs: Sequence[_NodeLog], wall: float) -> list[Series]:
        """Running and waiting over time: each named limiter, then each node."""
        out = []
        by_name = {log.name: log for log in logs}
        empty: Spans = ((), ())
        for lim in self._limiters:
            held = self._holds.get(lim.name)
            users = [by_name[n] for n in lim.users if n in by_name]
            running: Spans = (
                held
                if held is not None
                else (
                    [t for log in users for t in log.starts],
                    [t for log in users for t in log.ends],
                )
            )
            out.append(
                series(
                    lim.name,
                    "limiter",
                    running,
                    self._limiter_waits.get(lim.name, empty),
                    wall,
                    limit=lim.max_concurrency,
                    source="holders" if held is not None else "users",
                )
            )
        for log in logs:
            out.append(
                series(
                    log.name,
                    "node",
                    (log.starts, log.ends),
                    (log.wait_starts, log.wait_ends),
                    wall,
                    limit=log.limit,
                )
            )
        return out


def running(
    start: float, end: float, waits: Sequence[tuple[float, float]] | None, t0: float = 0.0
) -> list[tuple[float, float]]:
    """The stretches of ``[start, end]`` (seconds since ``t0``) not covered by ``waits``. A
    stretch shorter than ``INSTANT`` (less garbage collection) next to a wait (a call that
    begins by waiting, goes from one wait to the next, or ends right after one) is waiting."""
    if not waits:
        return [(start, end)]
    out: list[tuple[float, float]] = []
    at = start
    for a, b in sorted(waits):
        a, b = max(a, start), min(b, end)
        if own_time(t0 + at, t0 + a) >= INSTANT:
            out.append((at, a))
        at = max(at, b)
    if own_time(t0 + at, t0 + end) >= INSTANT or not out:
        out.append((at, max(at, end)))
    return out


def _summarise(
    log: _NodeLog, stats: NodeStats | None, limiters: Sequence[LimiterStats]
) -> NodeReport:
    peak, busy = overlap(log.starts, log.ends)
    exec_time = max(0.0, math.fsum(log.ends) - math.fsum(log.starts))
    wall = (log.last - log.first) if log.calls else 0.0
    waited = max(0.0, math.fsum(log.wait_ends) - math.fsum(log.wait_starts))
    node = NodeReport(
        name=log.name,
        paths=list(log.paths),
        executor=log.executor,
        limit=log.limit,
        items=stats.items if stats is not None else log.calls,
        failed=stats.failed if stats is not None else 0,
        retries=stats.retries if stats is not None else 0,
        wall_time=wall,
        exec_time=exec_time,
        busy_time=busy,
        mean_in_flight=exec_time / busy if busy > 0 else 0.0,
        peak_in_flight=peak,
        speedup=exec_time / wall if wall > 0 else 0.0,
        limiter_wait=dict(stats.limiter_wait) if stats is not None else {},
        loop_blocked=log.blocked,
        findings=[],
        wait_time=waited,
        usage=dict(stats.usage) if stats is not None else {},
        cpu_time=stats.cpu_s if stats is not None else 0.0,
        off_cpu_time=stats.off_cpu_s if stats is not None else 0.0,
        limiters=[lim.name for lim in limiters if log.name in lim.users],
        timeout=stats.timeout if stats is not None else None,
        timeouts=stats.timeouts if stats is not None else 0,
        cached=stats.cached if stats is not None else 0,
    )
    if log.executor in ("process", "ray", "thread") and log.limit:
        node.full_share = _full_share(log, log.limit, wall)
    node.findings = findings(node, limiters)
    return node


def _full_share(log: _NodeLog, limit: int, wall: float) -> float:
    """The share of the node's wall time with all ``limit`` of its pool's places running."""
    if wall <= 0:
        return 0.0
    points = sorted([(a, 1) for a in log.starts] + [(b, -1) for b in log.ends])
    level, full, since = 0, 0.0, 0.0
    for t, step in points:
        if level >= limit:
            full += t - since
        level += step
        since = t
    return min(1.0, full / wall)


def overlap(starts: Sequence[float], ends: Sequence[float]) -> tuple[int, float]:
    """Peak number of spans in flight at once, and the time at least one was in flight (a
    span ending at the instant another starts does not overlap it)."""
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


def _crowded_queues(
    logs: Sequence[_NodeLog], nodes: Sequence[NodeReport], whats: Sequence[str]
) -> dict[str, set[int]]:
    """Per node, the waits not to draw: its queue waits when too many queue at once (a pool
    of 2 workers and hundreds of items would otherwise fill the chart with pale bars)."""
    out: dict[str, set[int]] = {}
    for log, node in zip(logs, nodes, strict=True):
        queue = [i for i, code in enumerate(log.wait_what) if whats[code] in QUEUES]
        if not queue:
            continue
        crowd, _ = overlap([log.wait_starts[i] for i in queue], [log.wait_ends[i] for i in queue])
        if crowd > max(QUEUE_BARS, node.peak_in_flight):
            out[log.name] = set(queue)
    return out


def _bars(
    logs: Sequence[_NodeLog],
    cap: int,
    whats: Sequence[str],
    *,
    wait: bool,
    hidden: dict[str, set[int]] | None = None,
) -> list[Bar]:
    """Run (or wait) bars for every stretch but the ``hidden`` waits, or a uniform sample of
    ``cap``; lanes come later."""
    columns: list[tuple[Sequence[float], Sequence[float], Sequence[int]]] = []
    keep: list[list[int]] = []
    for log in logs:
        if not wait:
            columns.append((log.starts, log.ends, log.index))
            keep.append(list(range(len(log.starts))))
            continue
        skip = (hidden or {}).get(log.name, set())
        shown = [i for i in range(len(log.wait_starts)) if i not in skip]
        keep.append(shown)
        columns.append(
            (
                [log.wait_starts[i] for i in shown],
                [log.wait_ends[i] for i in shown],
                [log.wait_index[i] for i in shown],
            )
        )
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
                what=whats[log.wait_what[keep[k][i]]] if wait else "",
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
