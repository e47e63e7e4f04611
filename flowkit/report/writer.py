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
    LoopBlocked,
    NodeStarted,
    Observer,
    RunEnded,
    RunStarted,
    Waited,
)
from flowkit.limits import LimiterStats
from flowkit.redact import redact
from flowkit.report.files import write_report
from flowkit.report.model import Bar, LoopBlock, NodeReport, RunReport
from flowkit.results import ErrorRecord, NodeStats, RunInfo

MAX_BARS = 20_000
"""Item bars drawn on the timeline; beyond this many stretches, a uniform sample is drawn."""
MAX_ERRORS = 100
"""Failed items listed in the report (the counts stay exact)."""
UNDERUSE = 0.5
"""A node whose mean in-flight stays below this share of its limit gets a finding."""
LIMITER_SHARE = 0.1
"""Limiter waits above this share of a node's exec time are named as a cause."""
BOUND_SHARE = 0.5
"""A limiter whose slots were all taken this share of its active time bounded its users."""


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
    ``directory`` when the run closes. After the run, ``report`` holds the ``RunReport``.

    Each exec call is followed by its call id, so a wait recorded inside exec is cut out of
    exactly the call it happened in, however many copies of the node run the same item at
    the same path at once (parallel sub-flows). Counts come from the run's ``RunInfo``.
    """

    def __init__(self, directory: str | Path, *, max_bars: int = MAX_BARS) -> None:
        self.directory = Path(directory)
        self.max_bars = max_bars
        self.report: RunReport | None = None
        self._reset(RunInfo(run_id="", started=time.time()))

    def _reset(self, info: RunInfo) -> None:
        self.info = info
        self._t0 = time.monotonic()
        self._started_at = datetime.now(UTC)
        self._flow = info.flow
        self._ok = False
        self._ended: float | None = None
        self._nodes: dict[str, _NodeLog] = {}
        self._open: dict[int, tuple[float, int]] = {}
        self._inner: dict[int, list[tuple[float, float]]] = {}
        self._whats: dict[str, int] = {}
        self._blocks: list[LoopBlock] = []
        self._errors: list[ErrorRecord] = []
        self._limiters: list[LimiterStats] = []

    def start(self, info: RunInfo) -> None:
        self._reset(info)

    def __call__(self, event: Event) -> None:
        if isinstance(event, CallStarted):
            self._open[event.call] = (event.time - self._t0, event.index)
        elif isinstance(event, CallEnded):
            self._end(event)
        elif isinstance(event, Waited):
            self._wait(event)
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
        elif isinstance(event, RunStarted):
            self._flow = event.flow
        elif isinstance(event, RunEnded):
            self._ok = event.ok
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
        for a, b in running(start, end, inner):
            log.starts.append(a)
            log.ends.append(b)
            log.index.append(index)
            log.ok.append(event.ok)

    def _error(self, event: ItemFailed) -> None:
        if len(self._errors) < MAX_ERRORS:
            self._errors.append(
                ErrorRecord(
                    node=event.node,
                    index=event.index,
                    error_type=event.error_type,
                    message=redact(event.message),
                    attempts=event.attempts,
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
        stats = self.info.nodes
        nodes = [_summarise(log, stats.get(log.name), limiters) for log in logs]
        whats = list(self._whats)
        run_bars = _bars(logs, self.max_bars, whats, wait=False)
        wait_bars = _bars(logs, self.max_bars, whats, wait=True)
        traces = {(r.node, r.index): r.traceback for r in self.info.errors}
        errors = [
            e.model_copy(update={"traceback": redact(traces.get((e.node, e.index), ""))})
            for e in self._errors
        ]
        return RunReport(
            run_id=self.info.run_id,
            flow=self._flow,
            ok=self._ok,
            started_at=self._started_at,
            wall_time=self._ended if self._ended is not None else time.monotonic() - self._t0,
            nodes=nodes,
            spans=sum(log.calls for log in logs),
            segments=sum(len(log.starts) for log in logs),
            waits=sum(len(log.wait_starts) for log in logs),
            lanes=assign_lanes(run_bars),
            wait_lanes=assign_lanes(wait_bars),
            bars=run_bars + wait_bars,
            blocks=self._blocks,
            error_count=sum(n.failed for n in nodes),
            errors=errors,
            limiters=limiters,
        )


def running(
    start: float, end: float, waits: Sequence[tuple[float, float]] | None
) -> list[tuple[float, float]]:
    """The stretches of ``[start, end]`` not covered by ``waits``. A stretch shorter than
    ``INSTANT`` that ends in a wait (a call that begins by waiting, or goes straight from one
    wait to the next) counts as waiting."""
    if not waits:
        return [(start, end)]
    out: list[tuple[float, float]] = []
    at = start
    for a, b in sorted(waits):
        a, b = max(a, start), min(b, end)
        if a - at >= INSTANT:
            out.append((at, a))
        at = max(at, b)
    if end > at or not out:
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
