"""``report.html``: one self-contained page (inline CSS, JS and an SVG timeline)."""

from __future__ import annotations

import colorsys
import html
import string
from collections.abc import Sequence
from importlib import resources

from flowkit.limits import LimiterStats
from flowkit.report.charts import concurrency_note, concurrency_svg, timeline_svg
from flowkit.report.model import RunReport


def colours(names: Sequence[str]) -> dict[str, str]:
    """A distinct colour per node name, spread around the hue circle (golden angle)."""
    out = {}
    for i, name in enumerate(names):
        r, g, b = colorsys.hls_to_rgb((0.58 + i * 0.381966) % 1.0, 0.52, 0.62)
        out[name] = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
    return out


def stylesheet() -> str:
    """The report's CSS (``templates/report.css``)."""
    return resources.files("flowkit.templates").joinpath("report.css").read_text("utf-8")


def render_html(report: RunReport) -> str:
    """The report as one self-contained HTML page (no network assets)."""
    template = resources.files("flowkit.templates").joinpath("report.html").read_text("utf-8")
    palette = colours([n.name for n in report.nodes])
    status = report.outcome
    return string.Template(template).substitute(
        title=html.escape(f"flowkit report: {report.flow}"),
        style=stylesheet(),
        flow=html.escape(report.flow),
        status=status,
        meta=html.escape(meta_text(report)),
        findings=findings_html(report),
        legend=_legend_html(report, palette),
        concurrency=concurrency_html(report, palette),
        timeline=timeline_svg(report, palette),
        timeline_note=html.escape(_timeline_note(report)),
        zoom=_ZOOM_CONTROLS,
        nodes=nodes_html(report, palette),
        limiters=limiters_html(report) + budgets_html(report),
        errors=errors_html(report),
    )


def meta_text(report: RunReport) -> str:
    """The line under the title: run id, start, wall time and totals."""
    items = sum(n.items for n in report.nodes)
    return (
        f"run {report.run_id} · started {report.started_at:%Y-%m-%d %H:%M:%S} UTC · "
        f"{report.wall_time:.2f} s · {len(report.nodes)} nodes · {items:,} items · "
        f"{report.error_count:,} failed"
    )


def concurrency_html(
    report: RunReport,
    palette: dict[str, str],
    *,
    zoom: bool = True,
    uid: str = "",
    note: str | None = None,
) -> str:
    """The "concurrency over time" section (empty when nothing ran); ``zoom`` adds the zoom
    controls (the page's script drives them), ``note`` replaces the note under the chart."""
    chart = concurrency_svg(report, palette, uid)
    if not chart:
        return ""
    text = concurrency_note(report) if note is None else note
    return (
        '<section id="concurrency-section"><h2>Concurrency over time</h2>'
        f'{_ZOOM_CONTROLS if zoom else ""}{chart}<p class="note">{html.escape(text)}</p>'
        "</section>"
    )


_ZOOM_CONTROLS = (
    '<div class="zoombar"><button data-zoom="out" title="zoom out">&#8722;</button>'
    '<button data-zoom="left" title="earlier">&#9664;</button>'
    '<button data-zoom="right" title="later">&#9654;</button>'
    '<button data-zoom="reset" title="the whole run">whole run</button>'
    '<span class="window"></span>'
    '<span class="hint">drag across a chart to zoom in; double-click for the whole run</span>'
    "</div>"
)


def _timeline_note(report: RunReport) -> str:
    note = f"{report.spans:,} exec calls; at most {report.lanes} running at once (one lane each)."
    if report.waits > report.queued:
        note += (
            f" Below the line, pale: {report.waits - report.queued:,} waits (for a limiter, "
            "the node's limit, a worker or a retry's backoff), which count as waiting, not "
            "running."
        )
    if report.queued:
        note += (
            f" {report.queued:,} waits of items queued behind their node's own pool or limit "
            "are not drawn as bars: the concurrency chart above shows them as waiting."
        )
    if report.sampled:
        note += (
            f" Showing a uniform sample of {len(report.bars):,} stretches (the chart above "
            "and the tables count all)."
        )
    if report.blocks:
        note += " Red bands: the event loop was blocked."
    if report.marks:
        note += (
            f" Ticks above the lanes: {len(report.marks):,} items handled by post_item as "
            "they landed (e.g. a line written to a file)."
        )
    return note


def _legend_html(report: RunReport, palette: dict[str, str]) -> str:
    return "".join(
        f'<button class="key" data-focus="{html.escape(name)}">'
        f'<span class="swatch" style="background:{c}"></span>{html.escape(name)}</button>'
        for name, c in palette.items()
    )


def findings_html(report: RunReport) -> str:
    """The findings section (empty when there are none)."""
    rows = [
        f"<li><b>{html.escape(n.name)}</b>: {html.escape(text)}</li>"
        for n in report.nodes
        for text in n.findings
    ]
    if not rows:
        return ""
    return f'<section class="findings"><h2>Findings</h2><ul>{"".join(rows)}</ul></section>'


NODES_HEAD = (
    "<thead><tr><th>node</th><th>executor</th><th>items</th><th>failed</th><th>retries</th>"
    '<th>wall</th><th title="running time of all its calls, added up">running</th>'
    '<th>speedup</th><th title="calls running at once: mean / peak / the node\'s limit">'
    'in flight</th><th>waited</th><th class="l">limiter wait</th>'
    '<th class="l">usage</th></tr></thead>'
)


def nodes_html(report: RunReport, palette: dict[str, str]) -> str:
    """The nodes section: one row per node."""
    return (
        f"<section><h2>Nodes</h2><table>{NODES_HEAD}<tbody>{_node_rows(report, palette)}"
        "</tbody></table></section>"
    )


def _node_rows(report: RunReport, palette: dict[str, str]) -> str:
    rows = []
    for n in report.nodes:
        waits = html.escape(", ".join(f"{k} {v:.2f} s" for k, v in n.limiter_wait.items()))
        usage = html.escape(usage_text(n.usage))
        meter = ""
        if n.limit:
            mean = min(100.0, 100 * n.mean_in_flight / n.limit)
            peak = min(100.0, 100 * n.peak_in_flight / n.limit)
            meter = (
                f'<span class="meter" title="mean and peak in flight of the limit">'
                f'<span class="mean" style="width:{mean:.1f}%"></span>'
                f'<span class="peak" style="left:{peak:.1f}%"></span></span>'
            )
        paths = ", ".join(html.escape(p).replace("/", "/<wbr>") for p in n.paths)
        rows.append(
            "<tr>"
            f'<td class="name"><span class="swatch" style="background:{palette[n.name]}"></span>'
            f'{html.escape(n.name)}<div class="paths">{paths}</div></td>'
            f"<td>{html.escape(n.executor)}</td>"
            f"<td>{n.items:,}{f' ({n.cached:,} cached)' if n.cached else ''}</td>"
            f'<td class="{"bad" if n.failed else ""}">{n.failed:,}</td>'
            f"<td>{n.retries:,}</td>"
            f"<td>{n.wall_time:.2f} s</td>"
            f"<td>{n.exec_time:.2f} s</td>"
            f"<td>{n.speedup:.1f}&times;</td>"
            f"<td>{n.mean_in_flight:.1f} / {n.peak_in_flight} / {n.limit or '&ndash;'}{meter}</td>"
            f"<td>{f'{n.wait_time:.2f} s' if n.wait_time else '&ndash;'}</td>"
            f'<td class="wrap">{waits or "&ndash;"}</td>'
            f'<td class="wrap usage">{usage or "&ndash;"}</td>'
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


def limiters_html(report: RunReport) -> str:
    """The named limiters section (empty when the run had none)."""
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
            f"<td>{html.escape(lim.limits_text())}{_learned_html(lim)}</td>"
            f"<td>{lim.calls:,}</td>"
            f"<td>{lim.mean_in_flight:.1f} / {lim.peak_in_flight} / {cap or '&ndash;'}</td>"
            f"<td>{full}</td>"
            f"<td>{html.escape(lim.rate_text())}</td>"
            f"<td>{lim.wait_s:.2f} s / {lim.mean_wait_s:.3f} s ({lim.waits:,} waited)</td>"
            f'<td class="wrap">{users or "&ndash;"}</td>'
            "</tr>"
        )
    return (
        '<section id="limiters"><h2>Named limiters</h2><table><thead><tr><th>limiter</th>'
        "<th>limits</th><th>calls</th><th>in flight mean / peak / limit</th><th>all busy</th>"
        '<th>achieved rate</th><th>wait total / mean per call</th><th class="l">used by</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def budgets_html(report: RunReport) -> str:
    """The budgets' table: spent against allowed (empty without budgets)."""
    if not report.budgets:
        return ""
    rows = []
    for b in report.budgets:
        cells = []
        for cap, used, text in (
            (b.max_calls, b.calls, f"{b.calls:,} of {b.max_calls or 0:,}"),
            (b.max_tokens, b.tokens, f"{b.tokens:,.0f} of {b.max_tokens or 0:,.0f}"),
            (b.max_cost, b.cost, f"${b.cost:,.4f} of ${b.max_cost or 0:,.2f}"),
        ):
            share = f" ({100 * used / cap:.0f} %)" if cap else ""
            cells.append(f"<td>{html.escape(text + share) if cap else '&ndash;'}</td>")
        state = f"spent: {b.spent}" if b.spent else "within"
        rows.append(
            f"<tr><td>{html.escape(b.name)}</td>{''.join(cells)}"
            f'<td class="{"bad" if b.spent else ""}">{html.escape(state)}</td></tr>'
        )
    return (
        '<section id="budgets"><h2>Budgets</h2><table><thead><tr><th>budget</th>'
        "<th>calls</th><th>tokens</th><th>cost</th><th>state</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        '<p class="note">Spent against allowed (a resumed run counts what it spent before). '
        "Once a budget is spent no call starts; the calls in flight finish, so the total may "
        "pass the cap by what they used.</p></section>"
    )


def _learned_html(lim: LimiterStats) -> str:
    learned = lim.learned_text()
    return f'<br><span class="note">{html.escape(learned)}</span>' if learned else ""


def errors_html(report: RunReport) -> str:
    """The failed items, each with its redacted traceback (empty when none failed)."""
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
