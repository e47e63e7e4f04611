"""flowkit in a Jupyter notebook: whether this process is a notebook's kernel, and progress as
a table the notebook redraws in place.

``NotebookProgress`` uses IPython's display handles (``display(..., display_id=True)`` then
``update``), which every Jupyter front end redraws in place, so it needs no widget library.
Like the terminal's progress it reads the run's own counts on a timer: no event, no
per-item cost. Quick runs (under ``delay`` seconds) show nothing but their result.
"""

from __future__ import annotations

import asyncio
import html
import sys
import time
from typing import Any

from flowkit.events import Observer
from flowkit.results import NodeStats, RunInfo


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (an IPython shell with a kernel)."""
    ipython = sys.modules.get("IPython")
    if ipython is None or "ipykernel" not in sys.modules:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return getattr(shell, "kernel", None) is not None


class NotebookProgress(Observer):
    """A run's progress per node, redrawn in place in the notebook's output every
    ``refresh`` seconds once the run has lasted ``delay`` seconds, and once at the end."""

    wants_events = False

    def __init__(self, *, refresh: float = 0.5, delay: float = 0.5) -> None:
        self.refresh, self.delay = refresh, delay
        self._handle: Any = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self, info: RunInfo) -> None:
        self._info = info
        self._t0 = time.monotonic()
        self._handle = None
        self._timer = asyncio.get_running_loop().call_later(
            min(self.delay, self.refresh), self._tick
        )

    def _tick(self) -> None:
        if time.monotonic() - self._t0 >= self.delay:
            self._show(final=False)
        self._timer = asyncio.get_running_loop().call_later(self.refresh, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._handle is not None:
            self._show(final=True)

    def _show(self, *, final: bool) -> None:
        view = ProgressView(self._info, time.monotonic() - self._t0, final)
        if self._handle is None:
            from IPython.display import display

            self._handle = display(view, display_id=True)
        else:
            self._handle.update(view)


class ProgressView:
    """One drawing of a run's progress: HTML for notebooks, text for any other front end."""

    def __init__(self, info: RunInfo, elapsed: float, final: bool) -> None:
        self.info, self.elapsed, self.final = info, elapsed, final

    def _rows(self) -> list[tuple[NodeStats, int, int | None]]:
        rows = []
        for stats in self.info.nodes.values():
            totals = [c.total for c in stats.paths.values()]
            total = None if not totals or None in totals else sum(t or 0 for t in totals)
            rows.append((stats, stats.items, total))
        return rows

    def _head(self) -> str:
        status = self.info.status if self.final else "running"
        return f"{self.info.flow or 'run'} {self.info.run_id}: {status}, {self.elapsed:.1f} s"

    def __repr__(self) -> str:
        lines = [self._head()]
        for stats, done, total in self._rows():
            of = f"/{total:,}" if total else ""
            extra = f", {stats.failed:,} failed" if stats.failed else ""
            running = f", {stats.in_flight:,} running" if stats.in_flight > 0 else ""
            lines.append(f"  {stats.name}: {done:,}{of} done{extra}{running}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cell = "padding:2px 8px;text-align:right;white-space:nowrap"
        rows = []
        for stats, done, total in self._rows():
            share = 1.0 if self.final and done else (done / total if total else 0.0)
            colour = "#c62828" if stats.failed else "#2e7d32"
            bar = (
                '<div style="width:220px;height:8px;background:#e3e7ee;border-radius:4px">'
                f'<div style="width:{100 * min(share, 1.0):.1f}%;height:8px;'
                f'background:{colour};border-radius:4px"></div></div>'
            )
            rate = f"{done / self.elapsed:,.1f}/s" if done > 1 and self.elapsed > 0 else ""
            rows.append(
                f'<tr><td style="{cell};text-align:left">{html.escape(stats.name)}</td>'
                f'<td style="{cell}">{bar}</td>'
                f'<td style="{cell}">{done:,}{f" / {total:,}" if total else ""}</td>'
                f'<td style="{cell}">{stats.failed:,} failed</td>'
                f'<td style="{cell}">{max(stats.in_flight, 0):,} running</td>'
                f'<td style="{cell}">{rate}</td></tr>'
            )
        return (
            f'<div class="flowkit-progress"><div style="font-weight:600">'
            f"{html.escape(self._head())}</div>"
            f'<table style="border-collapse:collapse">{"".join(rows)}</table></div>'
        )
