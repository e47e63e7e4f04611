"""The report in a terminal: rich tables of the nodes and the named limiters."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


from flowkit.report.model import RunReport
from flowkit.report.page import usage_text


def summary_table(report: RunReport) -> Table:
    """The per-node numbers as a rich table (``flowkit report DIR`` prints it)."""
    from rich.table import Table

    status = "[green]ok[/]" if report.ok else f"[red]{report.outcome}[/]"
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
            f"{n.items:,}" + (f" ({n.cached:,} cached)" if n.cached else ""),
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
            "\n".join(filter(None, (lim.limits_text(), lim.learned_text()))),
            f"{lim.calls:,}",
            f"{lim.mean_in_flight:.1f} / {lim.peak_in_flight} / {cap or '-'}",
            f"{100 * lim.full_share:.0f} %" if cap else "-",
            lim.rate_text(),
            f"{lim.wait_s:.2f} s ({lim.waits:,} waits)",
            ", ".join(f"{name} ({how})" for name, how in lim.users.items()) or "-",
        )
    return table


def table_fits(table: Table, console: Console) -> bool:
    """Whether ``table`` fits ``console`` at its natural width: no cell wrapped, cut or
    shortened with an ellipsis."""
    from rich.measure import Measurement

    wide = console.options.update_width(10_000)
    return Measurement.get(console, wide, table).maximum <= console.width


def node_blocks(report: RunReport) -> list[str]:
    """The tables' numbers as short lines (indented continuation lines start with two
    spaces), for a terminal too narrow for the tables."""
    status = report.outcome
    lines = [
        f"{report.flow}: {status} in {report.wall_time:.2f} s (running: mean / peak / "
        "limit, waits left out)"
    ]
    for n in report.nodes:
        cached = f" ({n.cached:,} cached)" if n.cached else ""
        lines.append(
            f"{n.name}: {n.executor}, {n.items:,} items{cached}, {n.failed:,} failed, "
            f"{n.retries:,} retries"
        )
        lines.append(
            f"  wall {n.wall_time:.2f} s, running {n.exec_time:.2f} s in all, speedup "
            f"{n.speedup:.1f}x"
        )
        waits = ", ".join(f"{k} {v:.2f} s" for k, v in n.limiter_wait.items())
        lines.append(
            f"  running {n.mean_in_flight:.1f} / {n.peak_in_flight} / {n.limit or '-'}"
            + (f"; waited {n.wait_time:.2f} s" if n.wait_time else "")
            + (f"; limiter wait {waits}" if waits else "")
        )
        usage = usage_text(n.usage)
        if usage:
            lines.append(f"  usage: {usage}")
    if report.limiters:
        lines.append("named limiters (in flight: mean / peak / limit):")
    for lim in report.limiters:
        cap = lim.max_concurrency
        lines.append(
            f"limiter {lim.name} ({lim.limits_text() or 'no limits'}): {lim.calls:,} calls, "
            f"in flight {lim.mean_in_flight:.1f} / {lim.peak_in_flight} / {cap or '-'}"
            + (f", all busy {100 * lim.full_share:.0f} %" if cap else "")
        )
        users = ", ".join(f"{name} ({how})" for name, how in lim.users.items()) or "-"
        lines.append(
            f"  rate {lim.rate_text()}; waited {lim.wait_s:.2f} s ({lim.waits:,} waits); "
            f"used by {users}"
        )
        if lim.learns:
            lines.append(f"  learned: {lim.learned_text()}")
    return lines
