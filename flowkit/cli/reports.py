"""``flowkit report``: find a run's report (a folder or a run id), re-render it, summarise it."""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from flowkit.cli.targets import OK
from flowkit.commands import OUT_ROOT, FlowCommand, Registry
from flowkit.errors import OutputError, UsageError
from flowkit.redact import redact

_UNIT = re.compile(r"(\d) (s|%|x|ms)(?=[\s,;:)]|$)")

if TYPE_CHECKING:
    from rich.console import Console

    from flowkit.report import RunReport


def show_report(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    from flowkit.report.files import render_files

    folder = find_report(args.target)
    report = read_report(folder)
    try:
        written = render_files(report, folder)
    except OutputError as exc:
        raise UsageError(f"cannot re-render the report: {exc}") from None
    console = terminal()
    print_summary(console, report)
    say(console, "wrote " + ", ".join(str(p) for p in written))
    return OK


def find_report(target: str) -> Path:
    """The folder holding ``report.json``: ``target`` itself, or the report of the run whose
    id ``target`` is, under ``flowkit-out/FLOW/RUN_ID/`` (in ``report/`` or beside it)."""
    given = Path(target)
    if given.is_dir():
        if not (given / "report.json").is_file():
            raise UsageError(f"no report.json in {target}")
        return given
    if given.is_file():
        if given.name == "report.json":
            return given.parent
        raise UsageError(f"{target} is a file; give the folder holding report.json (or a run id)")
    if os.sep not in target and "/" not in target:
        found = sorted(Path(OUT_ROOT).glob(f"*/{target}/report/report.json")) + sorted(
            Path(OUT_ROOT).glob(f"*/{target}/report.json")
        )
        if found:
            return found[0].parent
        raise UsageError(
            f"no report.json in {target} and no report of run {target} under {OUT_ROOT}/ "
            "(a report written elsewhere: flowkit report DIR)"
        )
    raise UsageError(f"no report.json in {target}")


def read_report(folder: Path) -> RunReport:
    """``folder/report.json`` as a ``RunReport``, or a one-line ``UsageError``."""
    from pydantic import ValidationError

    from flowkit.report import load_report

    path = folder / "report.json"
    try:
        return load_report(folder)
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text, so not a flowkit report") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"msg": str(exc), "loc": ()}
        where = ".".join(map(str, first["loc"]))
        raise UsageError(
            f"{path} is not a flowkit report ({exc.error_count()} problem(s); first: "
            f"{where + ': ' if where else ''}{first['msg']})"
        ) from None


def terminal() -> Console:
    """A console as wide as the terminal (``COLUMNS`` when set), else 120 columns."""
    from rich.console import Console

    wide = sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit()
    return Console(width=None if wide else 120)


def say(console: Console, text: str, indent: str = "") -> None:
    """Print ``text`` wrapped at the console's width between words, never inside one, and
    never between a number and its unit."""
    glued = _UNIT.sub("\\1\u00a0\\2", redact(text))  # textwrap breaks at ASCII spaces only
    lines = textwrap.wrap(
        glued,
        width=max(console.width, 20),
        subsequent_indent=indent + "  ",
        initial_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    for line in lines:
        console.print(line.replace("\u00a0", " "), highlight=False, markup=False, soft_wrap=True)


def print_summary(console: Console, report: RunReport) -> None:
    """The nodes and limiters: as tables when they fit the console, else as text blocks."""
    from flowkit.report.tables import limiter_table, node_blocks, summary_table, table_fits

    tables = [summary_table(report), limiter_table(report)]
    if all(t is None or table_fits(t, console) for t in tables):
        for table in tables:
            if table is not None:
                console.print(table)
    else:
        for line in node_blocks(report):
            say(console, line.lstrip(" "), indent=line[: len(line) - len(line.lstrip(" "))])
    for budget in report.budgets:
        say(console, budget.line())
    for node in report.nodes:
        for finding in node.findings:
            say(console, f"{node.name}: {finding}")
