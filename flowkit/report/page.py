"""``report.html``: one self-contained page (inline CSS, JS and an SVG timeline)."""

from __future__ import annotations

import colorsys
import html
import math
import string
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from flowkit.report.model import LoopBlock, RunReport


def colours(names: Sequence[str]) -> dict[str, str]:
    """A distinct colour per node name, spread around the hue circle (golden angle)."""
    out = {}
    for i, name in enumerate(names):
        r, g, b = colorsys.hls_to_rgb((0.58 + i * 0.381966) % 1.0, 0.52, 0.62)
        out[name] = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
    return out


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
    note = f"{report.spans:,} exec calls; at most {report.lanes} running at once (one lane each)."
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
