"""Progress of a run, per node: live bars on a terminal, periodic log lines elsewhere.

The counts are the run's own (``RunInfo``), read when drawing: no per-item event is needed,
and drawing happens on a timer on the event loop, so a busy run pays for the display a few
times a second, not per item. Nested flows are indented under their parent. A node's total
is what its preps announced so far; a generator's unknown length makes the bar pulse.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from flowkit.events import (
    BatchStarted,
    Event,
    ItemFailed,
    LoopBlocked,
    NodeEnded,
    NodeStarted,
    Observer,
    PassEnded,
)
from flowkit.redact import redact
from flowkit.results import Counts, NodeStats, RunInfo

_live_taken = False  # one live display per process: a nested run's progress stays silent


@dataclass(slots=True)
class _Row:
    """One place in the graph (a path), over every run of it; ``counts`` are the run's own
    item counts there (none for a flow)."""

    path: str
    name: str
    depth: int
    is_flow: bool
    counts_in_flight: bool
    first: float
    counts: Counts = field(default_factory=Counts)
    stats: NodeStats | None = None
    running: int = 0
    blocked: int = 0
    ok: bool = True
    last: float = 0.0
    error_shown: bool = False
    logged_at: float = float("-inf")
    logged_done: int = -1
    passes: int | None = None  # a batch flow's sub-flow runs announced (None: unknown)
    passed: int = 0
    growing: bool = False  # a node's total still grows: a batch flow above it has passes left

    @property
    def done(self) -> int:
        """Items finished, whatever their outcome."""
        return self.counts.items

    @property
    def total(self) -> int | None:
        return self.counts.total

    @property
    def in_flight(self) -> int | None:
        """Calls in flight, when known: counted per node, so shown for a node at one path."""
        stats = self.stats
        if not self.counts_in_flight or stats is None or len(stats.paths) != 1:
            return None
        return stats.in_flight


class Progress(Observer):
    """Shows a run's progress per node on ``console`` (default: stderr).

    On a terminal: a live table of bars with done, failed, in-flight and rate per node, drawn
    every ``refresh`` seconds once the run has lasted ``delay`` seconds (quick runs print
    nothing). Elsewhere (``plain``, the default when the console is not a terminal): a log
    line per active node every ``interval`` seconds and one when a node finishes. Counts are
    the run's own (``RunInfo``), read when drawing; events only add rows and say what ended
    or failed. The first failure of each node is printed once, redacted.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        plain: bool | None = None,
        interval: float = 5.0,
        delay: float = 0.5,
        refresh: float = 0.25,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.interval, self.delay, self.refresh = interval, delay, refresh
        self._rows: dict[str, _Row] = {}
        self._info: RunInfo | None = None
        self._t0 = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._live: Live | None = None

    def start(self, info: RunInfo) -> None:
        self._rows = {}
        self._info = info
        self._t0 = time.monotonic()
        self._schedule()

    def __call__(self, event: Event) -> None:
        if isinstance(event, NodeStarted):
            row = self._rows.get(event.path) or self._add(event)
            row.running += 1
        elif isinstance(event, PassEnded):
            self._rows[event.path].passed += 1
        elif isinstance(event, BatchStarted):
            flow = self._rows.get(event.path)
            if flow is not None and flow.is_flow:
                known = flow.passes is not None or flow.passed == 0
                flow.passes = (flow.passes or 0) + event.items if event.items and known else None
        elif isinstance(event, NodeEnded):
            self._node_end(event)
        elif isinstance(event, ItemFailed):
            self._item_error(event)
        elif isinstance(event, LoopBlocked) and event.path in self._rows:
            self._rows[event.path].blocked += 1

    def close(self) -> None:
        global _live_taken
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()  # draws the final state and leaves it on screen
            self._live = None
            _live_taken = False
        elif self.plain:
            for row in self._rows.values():
                if not row.is_flow and row.logged_done != row.done:
                    self._log_row(row, final=True)

    def _add(self, event: NodeStarted) -> _Row:
        is_flow = event.role == "flow"
        row = _Row(
            path=event.path,
            name=event.node,
            depth=event.path.count("/"),
            is_flow=is_flow,
            counts_in_flight=event.executor not in ("process", "ray"),
            first=event.time,
        )
        stats = self._info.nodes.get(event.node) if self._info is not None else None
        if stats is not None and not is_flow:
            row.counts = stats.paths.setdefault(event.path, Counts())
            row.stats = stats
        self._rows[event.path] = row
        return row

    def _node_end(self, event: NodeEnded) -> None:
        row = self._rows[event.path]
        row.running -= 1
        row.ok = row.ok and event.ok
        row.last = max(row.last, event.time)
        quiet = time.monotonic() - row.logged_at < self.interval
        if self.plain and not row.is_flow and row.running == 0 and (not event.ok or not quiet):
            self._log_row(row, final=True)

    def _item_error(self, event: ItemFailed) -> None:
        row = self._rows[event.path]
        if not row.error_shown:
            row.error_shown = True
            message = redact(f"{event.error_type}: {event.message}")
            self._say(f"{event.path}: item {event.index} failed: {message[:300]}")

    # -- drawing (on a timer) ---------------------------------------------------------------

    def _schedule(self) -> None:
        period = self.interval if self.plain else self.refresh
        self._timer = asyncio.get_running_loop().call_later(period, self._on_timer)

    def _on_timer(self) -> None:
        global _live_taken
        self._mark_growing()
        if self.plain:
            for row in self._rows.values():
                if row.is_flow and row.running > 0 and row.passes:
                    self._say(f"{row.path}: {row.passed:,}/{row.passes:,} passes done")
                elif not row.is_flow and row.running > 0:
                    self._log_row(row, final=False)
        elif self._live is not None:
            self._live.update(self._table(), refresh=True)
        elif time.monotonic() - self._t0 >= self.delay and not _live_taken:
            _live_taken = True
            self._live = Live(
                self._table(), console=self.console, auto_refresh=False, redirect_stderr=True
            )
            self._live.start(refresh=True)
        self._schedule()

    def _say(self, text: str) -> None:
        if self.plain:
            stamp = f"flowkit [{time.monotonic() - self._t0:7.1f}s]"
            self.console.file.write(f"{stamp} {text}\n")
            self.console.file.flush()
        else:
            self.console.print(Text(text, style="red"))

    def _log_row(self, row: _Row, *, final: bool) -> None:
        row.logged_at, row.logged_done = time.monotonic(), row.done
        if final:
            status = "done" if row.ok else "FAILED"
            self._say(f"{row.path} {status}: {_stats(row, final=True)}")
        else:
            self._say(f"{row.path}: {_stats(row, final=False)}")

    def _mark_growing(self) -> None:
        """Which nodes' totals still grow: those under a batch flow with passes to come."""
        open_flows = [r.path + "/" for r in self._rows.values() if r.passes and r.passed < r.passes]
        for row in self._rows.values():
            row.growing = any(row.path.startswith(prefix) for prefix in open_flows)

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column(width=24)
        table.add_column()
        table.add_column(justify="right")
        now = time.monotonic()
        for row in self._rows.values():
            name = Text("  " * row.depth + row.name, style="bold" if row.is_flow else "")
            active = row.running > 0
            end = now if active else row.last
            elapsed = Text(f"{max(0.0, end - row.first):.1f}s", style="dim")
            if row.is_flow:
                state = "running" if active else ("done" if row.ok else "failed")
                bar: ProgressBar | str = ""
                if row.passes:
                    state = f"{row.passed:,}/{row.passes:,} passes {state}"
                    bar = ProgressBar(total=row.passes, completed=row.passed, width=24)
                table.add_row(name, bar, Text(state, style="dim" if row.ok else "red"), elapsed)
                continue
            known = active and bool(row.total)
            bar = ProgressBar(
                total=(row.total if known else None) if active else 1.0,
                completed=(float(row.done) if known else 0.0) if active else 1.0,
                width=24,
                finished_style="green" if row.ok else "red",
            )
            table.add_row(name, bar, _stats_text(row, now), elapsed)
        return table


def _rate(row: _Row, now: float) -> float:
    span = now - row.first
    return row.done / span if span > 0 else 0.0


def _stats(row: _Row, *, final: bool) -> str:
    """One log line's numbers for a node."""
    end = row.last if final else time.monotonic()
    if final:
        failed = f" ({row.counts.failed:,} failed)" if row.counts.failed else ""
        items = f"{row.done:,} item{'' if row.done == 1 else 's'}"
        parts = [f"{items}{failed} in {max(0.0, end - row.first):.1f} s"]
    else:
        if row.total and row.growing:
            parts = [f"{row.done:,} done of {row.total:,} so far"]
        else:
            parts = [f"{row.done:,}/{row.total:,} done" if row.total else f"{row.done:,} done"]
        if row.counts.failed:
            parts.append(f"{row.counts.failed:,} failed")
        if row.in_flight is not None:
            parts.append(f"{row.in_flight:,} in flight")
    if row.counts.cached:
        parts.append(f"{row.counts.cached:,} cached")
    if row.counts.timeouts:
        parts.append(f"{row.counts.timeouts:,} timed out")
    if row.counts.retries:
        parts.append(f"{row.counts.retries:,} retries")
    if row.done > 1:
        parts.append(f"{_rate(row, end):,.1f}/s")
    if row.blocked:
        parts.append(f"loop blocked {row.blocked}x")
    return ", ".join(parts)


def _stats_text(row: _Row, now: float) -> Text:
    """The same numbers, styled for the live table."""
    text = Text(f"{row.done:,} done" + (f" of {row.total:,} so far" if row.growing else ""))
    if row.counts.cached:
        text.append(f"  {row.counts.cached:,} cached", style="green")
    if row.counts.failed:
        text.append(f"  {row.counts.failed:,} failed", style="red")
    if row.counts.timeouts:
        text.append(f"  {row.counts.timeouts:,} timed out", style="yellow")
    if row.running and row.in_flight is not None:
        text.append(f"  {row.in_flight:,} in flight", style="cyan")
    if row.done > 1:
        rate = _rate(row, now if row.running else row.last)
        text.append(f"  {rate:,.1f}/s", style="dim")
        if row.running and row.total and rate > 0 and row.done < row.total and not row.growing:
            text.append(f"  ETA {(row.total - row.done) / rate:,.0f}s", style="dim")
    if row.blocked:
        text.append(f"  loop blocked {row.blocked}x", style="yellow")
    return text
