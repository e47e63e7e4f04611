"""The report page's charts: "concurrency over time" (one step chart per named limiter and
per node) and the item timeline, on one zoomable time axis.

Both SVGs map time to x the same way (``TimeAxis``), so the page's script zooms and pans
them together: what is drawn against time sits in a ``<g class="zoom">`` that the script
transforms, and the ticks are redrawn for the window shown.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flowkit.limits import LimiterStats
from flowkit.report.model import LoopBlock, RunReport, Series

WIDTH = 1200
"""SVG user units across; the page draws the SVG at its container's width."""
PAD = 18
"""Room left and right of the plotted time for the first and last tick labels."""
AXIS = 26
"""Height of the tick labels above a chart."""
BAND = 18
"""Height of the band between running and waiting lanes, which holds its label."""
LIMITER_COLOUR = "#44546a"


@dataclass(frozen=True)
class TimeAxis:
    """Seconds from the run's start to SVG x, shared by every chart of one page."""

    span: float

    @classmethod
    def of(cls, report: RunReport) -> TimeAxis:
        ends = [b.end for b in report.bars] + [s.t[-1] for s in report.series if s.t]
        return cls(max([report.wall_time, *ends, 1e-3]))

    @property
    def scale(self) -> float:
        return (WIDTH - 2 * PAD) / self.span

    def x(self, t: float) -> float:
        return PAD + t * self.scale

    def attrs(self, top: float) -> str:
        """The SVG attributes the page's zoom script reads."""
        return f'data-span="{self.span:.6g}" data-axis="{top:.0f}"'

    def ticks(self, top: float, bottom: float) -> str:
        """Tick lines and labels for the whole run (the script redraws them on zoom)."""
        step = tick_step(self.span)
        out = ['<g class="ticks">']
        for k in range(int(self.span / step + 1e-9) + 1):
            t = k * step
            x = f"{self.x(t):.2f}"
            edge = " first" if self.x(t) < 40 else " last" if self.x(t) > WIDTH - 40 else ""
            out.append(
                f'<line class="tick" x1="{x}" x2="{x}" y1="{top - 6:.0f}" y2="{bottom:.0f}"/>'
                f'<text class="tick{edge}" x="{x}" y="{top - 10:.0f}">{t:g} s</text>'
            )
        out.append("</g>")
        return "".join(out)

    def clip(self, name: str, top: float, bottom: float) -> str:
        """A clip path around the plotted time, so a zoomed drawing stays inside it."""
        return (
            f'<clipPath id="clip-{name}"><rect x="{PAD}" y="{top:.1f}" '
            f'width="{WIDTH - 2 * PAD}" height="{max(bottom - top, 0):.1f}"/></clipPath>'
        )


def tick_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about eight ticks."""
    raw = span / 8
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


# -- concurrency over time ------------------------------------------------------------------

TITLE = 19
"""Height of a panel's title line."""
UP = 34
"""Height of a panel's running (or held) area, above its baseline."""
DOWN = 16
"""Height of a panel's waiting area, below its baseline."""
GAP = 9


def concurrency_svg(report: RunReport, palette: dict[str, str], uid: str = "") -> str:
    """One panel per series: running calls (or a limiter's holders) as a filled step line
    above a baseline against the dashed limit, waiting calls pale below it. ``uid`` keeps
    its element ids apart from another chart's in the same document (a notebook)."""
    panels = [s for s in report.series if s.peak_running or s.peak_waiting]
    if not panels:
        return ""
    axis = TimeAxis.of(report)
    panel_h = TITLE + UP + DOWN + GAP
    height = AXIS + len(panels) * panel_h
    out = [
        f'<svg id="concurrency" viewBox="0 0 {WIDTH} {height:.0f}" preserveAspectRatio="none" '
        f'{axis.attrs(AXIS)} role="img" aria-label="calls running and waiting over time">',
        "<defs>",
        *(
            axis.clip(f"{uid}c{k}", AXIS + k * panel_h + TITLE, AXIS + (k + 1) * panel_h - GAP)
            for k in range(len(panels))
        ),
        "</defs>",
        axis.ticks(AXIS, height),
    ]
    limiters = {lim.name: lim for lim in report.limiters}
    for k, s in enumerate(panels):
        top = AXIS + k * panel_h
        colour = LIMITER_COLOUR if s.kind == "limiter" else palette.get(s.name, LIMITER_COLOUR)
        title = _panel_title(s, limiters.get(s.name) if s.kind == "limiter" else None)
        out.append(_panel(s, title, axis, top, colour, f"{uid}c{k}"))
    out.append("</svg>")
    return "".join(out)


def concurrency_note(report: RunReport) -> str:
    """What the concurrency chart shows, in words."""
    if not any(s.peak_running or s.peak_waiting for s in report.series):
        return ""
    note = (
        "Above each line, filled: calls running (for a limiter: calls holding it); below "
        "it, pale: calls waiting (for a limiter, the node's limit, a worker or a retry's "
        "backoff); dashed: the limit. Each panel has its own scale; the numbers on the "
        "right are its top (running) and bottom (waiting)."
    )
    if any(s.kind == "limiter" and s.source == "users" for s in report.series):
        note += (
            " A limiter drawn as a line (\u2248) shows the calls running in the nodes that "
            "take it, not its holders: a call may also work outside the limiter; its title "
            "gives the peak the limiter itself counted."
        )
    if any(s.running_peak for s in report.series):
        note += (
            " Long runs are drawn as the mean of each short stretch of time; the thin "
            "line above is each stretch's peak."
        )
    return note


def _panel(s: Series, title: str, axis: TimeAxis, top: float, colour: str, clip: str) -> str:
    base = top + TITLE + UP
    up_max = max(s.limit or 0, s.peak_running, 1)
    down_max = max(s.peak_waiting, 1)

    def up(v: float) -> float:
        return base - UP * v / up_max

    def down(v: float) -> float:
        return base + DOWN * v / down_max

    out = [
        f'<text class="panel" x="{PAD}" y="{top + 12:.1f}">{html.escape(title)}</text>',
        f'<g clip-path="url(#clip-{clip})"><g class="zoom">',
    ]
    if s.peak_running and s.source == "users":  # an estimate: a line, not a filled area
        line = _step_path(s.t, axis.span, s.running, axis, up, None)
        out.append(f'<path class="run-line estimate" d="{line}" stroke="{colour}"/>')
    elif s.peak_running:
        area = _step_path(s.t, axis.span, s.running, axis, up, base)
        out.append(f'<path class="run-area" d="{area}" fill="{colour}"/>')
    if s.running_peak:
        peak = _step_path(s.t, axis.span, s.running_peak, axis, up, None)
        out.append(f'<path class="peak-line" d="{peak}" stroke="{colour}"/>')
    if s.peak_waiting:
        area = _step_path(s.t, axis.span, s.waiting, axis, down, base)
        out.append(f'<path class="wait-area" d="{area}" fill="{colour}"/>')
    if s.waiting_peak:
        peak = _step_path(s.t, axis.span, s.waiting_peak, axis, down, None)
        out.append(f'<path class="peak-line wait-peak" d="{peak}" stroke="{colour}"/>')
    out.append("</g></g>")
    right = WIDTH - PAD
    out.append(
        f'<line class="base" x1="{PAD}" x2="{right}" y1="{base:.1f}" y2="{base:.1f}"/>'
        f'<text class="scale" x="{WIDTH - 1}" y="{up(up_max) + 8:.1f}">{up_max}</text>'
    )
    if s.peak_waiting:
        out.append(
            f'<text class="scale" x="{WIDTH - 1}" y="{down(down_max):.1f}">{down_max}</text>'
        )
    if s.limit:
        y = f"{up(s.limit):.1f}"
        out.append(f'<line class="limit" x1="{PAD}" x2="{right}" y1="{y}" y2="{y}"/>')
    return "".join(out)


def _panel_title(s: Series, lim: LimiterStats | None) -> str:
    limit = f" \u00b7 limit {s.limit}" if s.limit else ""
    if s.kind == "limiter":
        held = lim.peak_in_flight if lim is not None else s.peak_running
        if s.source == "holders":
            parts = [f"peak {s.peak_running} held"]
        else:  # its own count of holders, and the calls running in the nodes that take it
            users = list(lim.users) if lim is not None else []
            names = ", ".join(users[:3]) + (f" and {len(users) - 3} more" if len(users) > 3 else "")
            parts = [
                f"peak {held} held (its own count)",
                f"line: \u2248 calls running in {names or 'its users'}, peak {s.peak_running}",
            ]
        head = f"limiter {s.name}{limit}"
    else:
        parts = [f"peak {s.peak_running} running"]
        head = f"{s.name}{limit}"
    if s.peak_waiting:
        parts.append(f"{s.peak_waiting} waiting")
    return f"{head} \u00b7 " + "; ".join(parts)


def _step_path(
    starts: Sequence[float],
    end: float,
    values: Sequence[float],
    axis: TimeAxis,
    y: Callable[[float], float],
    base: float | None,
) -> str:
    """An SVG path of a step function that holds ``values[i]`` from ``starts[i]`` on, until
    ``end``: closed down to ``base`` (an area) or open (a line)."""
    parts: list[str] = []
    last = ""
    for t, v in zip(starts, values, strict=True):
        x, level = f"{axis.x(t):.2f}", f"{y(v):.1f}"
        if not parts:
            parts.append(f"M{x},{base:.1f}L{x},{level}" if base is not None else f"M{x},{level}")
        elif level != last:
            parts.append(f"L{x},{last}L{x},{level}")
        last = level
    if parts:
        parts.append(f"L{axis.x(end):.2f},{last}")
        if base is not None:
            parts.append(f"L{axis.x(end):.2f},{base:.1f}Z")
    return "".join(parts)


# -- the item timeline -----------------------------------------------------------------------


def timeline_svg(report: RunReport, palette: dict[str, str]) -> str:
    """Lanes of running calls, then (below a labelled band) lanes of waits, one bar per
    stretch, coloured by node."""
    axis = TimeAxis.of(report)
    run_lanes = max(report.lanes, 1)
    lanes = run_lanes + report.wait_lanes
    lane_h = max(1.5, min(18.0, 480 / lanes))
    band = BAND if report.wait_lanes else 0
    wait_top = AXIS + run_lanes * lane_h + band
    height = wait_top + report.wait_lanes * lane_h + 4
    scale = axis.scale

    def x(t: float) -> str:
        return f"{axis.x(t):.2f}"

    out = [
        f'<svg id="timeline" viewBox="0 0 {WIDTH} {height:.0f}" preserveAspectRatio="none" '
        f'{axis.attrs(AXIS)} role="img" aria-label="timeline of exec calls">',
        f"<defs>{axis.clip('timeline', AXIS, height)}</defs>",
        axis.ticks(AXIS, height),
    ]
    if report.wait_lanes:
        y = AXIS + run_lanes * lane_h + band / 2
        out.append(
            f'<line class="split" x1="0" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="split" x="{PAD + 4}" y="{y + 4:.1f}">'
            "&#160;running &#8593; &#183; waiting &#8595;&#160;</text>"
        )
    out.append('<g clip-path="url(#clip-timeline)"><g class="zoom">')
    for block in report.blocks:
        out.append(
            f'<rect class="blocked" x="{x(block.start)}" y="{AXIS}" '
            f'width="{max(block.seconds * scale, 1):.2f}" height="{height - AXIS - 4:.1f}">'
            f"<title>{html.escape(_block_label(block))}</title></rect>"
        )
    for mark in report.marks:  # post_item handled an item as it landed
        label = f"{mark.node} item {mark.index}: post_item at {mark.at:.3f} s"
        out.append(
            f'<line class="mark" data-node="{html.escape(mark.node)}" x1="{x(mark.at)}" '
            f'x2="{x(mark.at)}" y1="{AXIS - 7}" y2="{AXIS}"><title>{html.escape(label)}</title>'
            "</line>"
        )
    gap = 1.0 if lane_h >= 4 else 0.0
    for bar in report.bars:
        took = f"{bar.start:.3f} to {bar.end:.3f} s ({bar.end - bar.start:.3f} s)"
        item = f"item {bar.index}" if bar.index >= 0 else "an item"
        if bar.kind == "wait":
            label = f"{bar.node} {item} waiting for {bar.what}: {took}"
            cls, y_bar = "wait", wait_top + bar.lane * lane_h
        else:
            label = f"{bar.node} {item} running: {took}{'' if bar.ok else ', failed'}"
            cls, y_bar = ("bar" if bar.ok else "bar fail"), AXIS + bar.lane * lane_h
        out.append(
            f'<rect class="{cls}" data-node="{html.escape(bar.node)}" '
            f'x="{x(bar.start)}" y="{y_bar:.1f}" '
            f'width="{max((bar.end - bar.start) * scale, 0.6):.2f}" height="{lane_h - gap:.1f}" '
            f'fill="{palette[bar.node]}"><title>{html.escape(label)}</title></rect>'
        )
    out.append("</g></g></svg>")
    return "".join(out)


def _block_label(block: LoopBlock) -> str:
    return f"event loop blocked {block.seconds:.2f} s in {block.node}.{block.hook} ({block.where})"
