"""A report's files: ``report.json`` written and read back, ``report.html`` and ``report.png``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from flowkit.errors import FlowkitWarning

if TYPE_CHECKING:
    pass

from flowkit.report.model import Bar, RunReport
from flowkit.report.page import colours, render_html

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
    title = f"{report.flow}: {report.spans:,} exec calls, at most {report.lanes} running at once"
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
