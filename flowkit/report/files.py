"""A report's files: ``report.json`` written and read back, ``report.html`` and ``report.png``."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from flowkit.errors import FlowkitWarning
from flowkit.files import ensure_dir, write_bytes, write_text
from flowkit.report.model import Bar, RunReport
from flowkit.report.page import colours, render_html

_png_note_given = False


def write_report(report: RunReport, directory: str | Path) -> list[Path]:
    """Write ``report.json``, ``report.html`` and (with matplotlib) ``report.png``; none of
    them through a symbolic link (``flowkit.files``)."""
    out = ensure_dir(directory)
    # the report's text was redacted as it was recorded; a second pass over JSON or HTML
    # could cut into its quoting or markup
    write_text(out / "report.json", report.model_dump_json(), redacted=False)
    return [out / "report.json", *render_files(report, out)]


def render_files(report: RunReport, directory: str | Path) -> list[Path]:
    """Write the views of a report: ``report.html`` and, with matplotlib, ``report.png``."""
    out = Path(directory)
    write_text(out / "report.html", render_html(report), redacted=False)
    written = [out / "report.html"]
    if render_png(report, out / "report.png"):
        written.append(out / "report.png")
    return written


def load_report(directory: str | Path) -> RunReport:
    """Read ``report.json`` back from a report directory."""
    text = (Path(directory) / "report.json").read_text(encoding="utf-8")
    return RunReport.model_validate_json(text)


def render_png(report: RunReport, path: Path) -> bool:
    """Draw the timeline with matplotlib; False (and a one-time note) when it is missing."""
    global _png_note_given
    try:
        fig = png_figure(report)
    except ImportError:
        if not _png_note_given:
            _png_note_given = True
            warnings.warn(
                "flowkit: report.png skipped; pip install 'flowkit[report]' adds it",
                FlowkitWarning,
                stacklevel=3,
            )
        return False
    image = io.BytesIO()
    fig.savefig(image, format="png")
    write_bytes(path, image.getvalue())
    return True


def png_figure(report: RunReport) -> Any:
    """The timeline as a matplotlib ``Figure`` (ImportError without matplotlib).

    Running lanes and waiting lanes get axes of their own, each numbered from 0 with whole
    numbers, so their labels never sit on the bars.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    palette = colours([n.name for n in report.nodes])
    run = [b for b in report.bars if b.kind == "run"]
    waits = [b for b in report.bars if b.kind == "wait"]
    shown = [(run, max(report.lanes, 1), "running")]
    if waits:
        shown.append((waits, max(report.wait_lanes, 1), "waiting (hatched)"))
    notes = [lim.line() for lim in report.limiters]
    heights = [min(lanes, 40) * 0.18 + 0.5 for _, lanes, _ in shown]
    fig = Figure(figsize=(12, 1.4 + sum(heights) + 0.22 * len(notes)), dpi=110)
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (bars, lanes, label) in zip(axes, shown, strict=True):
        for block in report.blocks:
            ax.axvspan(block.start, block.start + block.seconds, color="#d62728", alpha=0.15, lw=0)
        _draw_bars(ax, bars, palette, wait=label != "running")
        ax.set_ylim(lanes - 0.5, -0.5)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(lanes, 8)))
        ax.set_ylabel(f"{label}\n(lanes)", fontsize="small")
    axes[0].set_xlim(0, max(report.wall_time, 1e-3))
    axes[-1].set_xlabel("seconds since the run started")
    title = f"{report.flow}: {report.spans:,} exec calls, at most {report.lanes} running at once"
    if report.waits:
        title += f"; {report.waits:,} waits"
    axes[0].set_title(title + (" (sample)" if report.sampled else ""), loc="left")
    handles = [Patch(color=c, label=name) for name, c in palette.items()]
    if handles:
        axes[0].legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small"
        )
    for k, note in enumerate(notes):
        fig.text(0.01, 0.01 + 0.22 * k / fig.get_figheight(), note, fontsize="small")
    fig.tight_layout(rect=(0, 0.22 * len(notes) / fig.get_figheight(), 1, 1))
    return fig


def _draw_bars(ax: Any, bars: list[Bar], palette: dict[str, str], *, wait: bool) -> None:
    """All ``bars`` as one collection (a patch per bar is far too slow)."""
    from matplotlib.collections import PolyCollection

    if not bars:
        return
    boxes = [
        [
            (b.start, b.lane - 0.4),
            (b.end, b.lane - 0.4),
            (b.end, b.lane + 0.4),
            (b.start, b.lane + 0.4),
        ]
        for b in bars
    ]
    colours_ = [palette[b.node] for b in bars]
    if wait:
        ax.add_collection(
            PolyCollection(
                boxes,
                facecolors=colours_,
                alpha=0.3,
                hatch="///",
                edgecolors="#9aa5b1",
                linewidths=0.0,
            )
        )
    else:
        ax.add_collection(
            PolyCollection(
                boxes,
                facecolors=colours_,
                edgecolors=["white" if b.ok else "#d62728" for b in bars],
                linewidths=0.6 if len(bars) < 2000 else 0.0,
            )
        )
