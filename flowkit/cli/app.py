"""The command line's entry and parser: ``main``, its options and exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from flowkit.cli.actions import draw_graph, export_run, list_flows, list_runs, run_flow
from flowkit.cli.caching import clear_cache, list_cache
from flowkit.cli.reports import show_report
from flowkit.cli.targets import (
    DEFAULT_CACHE,
    DEFAULT_STORE,
    FAILED,
    INTERRUPTED,
    USAGE,
    missing_extra_for,
)
from flowkit.commands import OUT_ROOT, FlowCommand, Registry, positive_int, positive_number
from flowkit.errors import (
    CommandLoadError,
    ConfigError,
    FlowkitError,
    FlowkitWarning,
    GraphError,
    MissingExtraError,
    PreParseError,
    UsageError,
)
from flowkit.node import EXECUTORS
from flowkit.redact import redact
from flowkit.serve import live_address

SIGPIPE_EXIT = 141
"""The status of a command whose output pipe closed early (128 + SIGPIPE), as shells report
for tools that SIGPIPE ends."""


def main(argv: Sequence[str] | None = None, commands: Iterable[FlowCommand] | None = None) -> int:
    """Run the ``flowkit`` command line; returns the exit status.

    ``commands`` replaces the flows found through entry points (tests, embedding).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code = _main(argv, commands)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """Stdout's reader went away (``flowkit export ... | head -1``): stop quietly, as a
    tool killed by SIGPIPE does, without a traceback when Python flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout (embedded, captured): nothing to flush
        pass
    return SIGPIPE_EXIT


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """flowkit's own warnings as one line on stderr; others as Python prints them."""
    if issubclass(category, FlowkitWarning):
        text = redact(str(message)).removeprefix("flowkit: ")
        print(f"flowkit: warning: {text}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _main(argv: list[str], commands: Iterable[FlowCommand] | None) -> int:
    registry = Registry.discover() if commands is None else Registry(commands)
    command: FlowCommand | None = None
    try:
        command = _named_command(argv, registry)
        args = _parser(registry, command).parse_args(argv)
        return int(args.handler(args, registry, command))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else USAGE
    except (UsageError, CommandLoadError, MissingExtraError, ConfigError, GraphError) as exc:
        print(f"flowkit: error: {redact(str(exc))}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print("flowkit: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        raise
    except FlowkitError as exc:  # flowkit's own errors say what to fix: one line
        missing = missing_extra_for(exc, registry, command)
        print(f"flowkit: error: {redact(str(missing or exc))}", file=sys.stderr)
        return USAGE if missing is not None else FAILED
    except Exception as exc:  # a flow that fails to import or build
        missing = missing_extra_for(exc, registry, command)
        if missing is not None:
            print(f"flowkit: error: {missing}", file=sys.stderr)
            return USAGE
        print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        return FAILED


# -- parsing ----------------------------------------------------------------------------------


def _parser(registry: Registry, command: FlowCommand | None) -> argparse.ArgumentParser:
    parser = _Parser(prog="flowkit", description="Run flowkit flows and look at how they ran.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a flow",
        description="Run a bundled flow (NAME) or MODULE:ATTR (a flow, a node, or a "
        "zero-argument factory returning one).",
        epilog=f"bundled flows: {', '.join(registry.names()) or 'none installed'}",
    )
    _generic_run_options(run)
    if command is not None:
        command.add_arguments(run)
    run.set_defaults(handler=run_flow, generic_options=_generic_dests())

    listing = sub.add_parser(
        "list",
        help="list the bundled flows",
        description="List the bundled flows (registered under the 'flowkit.flows' entry points).",
    )
    listing.set_defaults(handler=list_flows)

    graph = sub.add_parser(
        "graph",
        help="print a flow as a Mermaid flowchart",
        description="Print a flow as a Mermaid flowchart; wiring problems go to stderr.",
    )
    graph.add_argument("target", metavar="NAME|MODULE:ATTR")
    graph.set_defaults(handler=draw_graph)

    report = sub.add_parser(
        "report",
        help="re-render a run report and summarise it",
        description="Re-render DIR/report.html (and .png) from DIR/report.json and print a "
        f"summary. A RUN_ID finds the report under {OUT_ROOT}/FLOW/RUN_ID/.",
    )
    report.add_argument("target", metavar="DIR|RUN_ID")
    report.set_defaults(handler=show_report)

    runs = sub.add_parser(
        "runs",
        help="list the runs in a checkpoint store",
        description="List the runs in a store: id, flow, started, status, items done/failed.",
    )
    _store_option(runs)
    runs.set_defaults(handler=list_runs)

    export = sub.add_parser(
        "export",
        help="export a run's stored results",
        description="Write a run's stored results and error records as JSON lines or CSV.",
    )
    export.add_argument("run_id", metavar="RUN_ID")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--node", metavar="NAME", help="only this node (name or path)")
    export.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    _store_option(export)
    export.set_defaults(handler=export_run)

    cache = sub.add_parser(
        "cache",
        help="look at or clear the cache of results across runs",
        description="The cache that `flowkit run --cache` keeps: ls lists its entries by "
        "node; clear removes them (all, a node's, or those older than some seconds).",
    )
    actions = cache.add_subparsers(required=True, metavar="ACTION")
    ls = actions.add_parser("ls", help="entries by node: how many, their size, their age")
    clear = actions.add_parser("clear", help="remove entries")
    clear.add_argument("--node", action="append", default=[], metavar="NAME", help="only NAME")
    clear.add_argument(
        "--older-than", type=positive_number, metavar="S", help="only entries older than S s"
    )
    for action, handler in ((ls, list_cache), (clear, clear_cache)):
        action.add_argument(
            "--cache", metavar="PATH", default=DEFAULT_CACHE, help=f"default: {DEFAULT_CACHE}"
        )
        action.set_defaults(handler=handler)
    return parser


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="PATH",
        default=DEFAULT_STORE,
        help=f"the SQLite checkpoint store (default: {DEFAULT_STORE})",
    )


def _generic_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="NAME|MODULE:ATTR")
    parser.add_argument(
        "--shared",
        metavar="JSON|@FILE",
        help="initial shared store: a JSON object, or @path to a JSON file",
    )
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        type=_limit,
        metavar="NODE=N|N",
        help="NODE=N caps that node's exec calls in flight (repeatable); a bare N is passed "
        "to the flow (e.g. only the first N tasks)",
    )
    parser.add_argument(
        "--executor",
        action="append",
        default=[],
        type=_executor,
        metavar="NODE=KIND|KIND",
        help=f"run that node's exec on KIND ({', '.join(EXECUTORS)}); repeatable; a bare KIND "
        "is passed to the flow (e.g. batt's sequential|thread|process|ray)",
    )
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="write report.json/.html/.png into DIR (a bundled flow: into its run's folder "
        f"under {OUT_ROOT}/ by default)",
    )
    parser.add_argument(
        "--live",
        nargs="?",
        const=True,
        type=_live,
        metavar="[HOST:]PORT",
        help="serve the run's report at http://127.0.0.1:PORT while it runs, updated every "
        "second (default port 8765, or a free one); HOST:PORT listens elsewhere",
    )
    parser.add_argument("--no-progress", action="store_true", help="print no progress")
    parser.add_argument(
        "--otel",
        nargs="?",
        const=True,
        metavar="URL",
        help="export the run as OpenTelemetry traces over OTLP/HTTP, to URL (e.g. Phoenix's "
        "http://localhost:6006) or where OTEL_EXPORTER_OTLP_ENDPOINT says (default "
        "http://localhost:4318); needs the otel extra",
    )
    _store_option(parser)
    parser.add_argument("--no-store", action="store_true", help="checkpoint nothing")
    parser.add_argument("--run-id", metavar="ID", help="the id of this run (default: new)")
    parser.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="rerun, reusing every result RUN_ID stored (failed items run again)",
    )
    parser.add_argument(
        "--skip-failed", action="store_true", help="with --resume: keep stored failures"
    )
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        metavar="N",
        help="stop a flow that runs more than N nodes in one pass (a loop that never ends)",
    )
    parser.add_argument(
        "--max-rss-mb",
        type=float,
        metavar="MB",
        help="admit no new items while resident memory is above MB",
    )
    parser.add_argument(
        "--timeout",
        action="append",
        default=[],
        type=_timeout,
        metavar="NODE=S",
        help="fail a try of NODE's exec after S seconds (retried per its policy; repeatable)",
    )
    budget = parser.add_argument_group(
        "budget",
        "A hard stop for the whole run: once spent no call starts, the calls in flight finish, "
        "and the run ends with exit status 3 (--resume RUN_ID with a larger one goes on).",
    )
    budget.add_argument(
        "--max-cost",
        type=positive_number,
        metavar="USD",
        help="dollars, from the LLM prices (FLOWKIT_LLM_PRICES=MODEL=IN,OUT;... dollars per "
        "million prompt, completion tokens, or the flow's own --price)",
    )
    budget.add_argument("--max-calls", type=positive_int, metavar="N", help="calls started")
    budget.add_argument("--max-tokens", type=positive_int, metavar="N", help="tokens used")
    parser.add_argument(
        "--cache",
        nargs="?",
        const=DEFAULT_CACHE,
        metavar="PATH",
        help=f"reuse results from earlier runs and keep new ones (nodes with a cache policy; "
        f"default {DEFAULT_CACHE}); see `flowkit cache ls|clear`",
    )


def _generic_dests() -> frozenset[str]:
    """The names ``flowkit run``'s own options land under (the rest are the command's)."""
    parser = argparse.ArgumentParser(add_help=False)
    _generic_run_options(parser)
    return frozenset(vars(parser.parse_args(["-"])))


def _limit(text: str) -> tuple[str | None, int]:
    name, eq, number = text.rpartition("=")
    if (eq and not name) or not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(
            f"expected NODE=N or N with N a positive integer, got {text!r}"
        )
    return (name if eq else None), int(number)


def _live(text: str) -> str | int:
    try:
        live_address(int(text) if text.isdigit() else text)
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"expected a port number (0-65535) or HOST:PORT, got {text!r}"
        ) from None
    return int(text) if text.isdigit() else text


def _timeout(text: str) -> tuple[str, float]:
    name, eq, number = text.rpartition("=")
    try:
        seconds = float(number)
    except ValueError:
        seconds = 0.0
    if not eq or not name or not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected NODE=SECONDS with SECONDS a positive number, got {text!r}"
        )
    return name, seconds


def _executor(text: str) -> tuple[str | None, str]:
    name, eq, kind = text.rpartition("=")
    if not eq and text in (*EXECUTORS, "sequential"):
        return None, text  # a bare KIND: for the bundled flow to use
    if not eq or not name or kind not in EXECUTORS:
        raise argparse.ArgumentTypeError(
            f"expected NODE=KIND with KIND one of {', '.join(EXECUTORS)}, got {text!r}"
        )
    return name, kind


class _Parser(argparse.ArgumentParser):
    """Reports a bad option in one line (``flowkit: error: ...``, exit 2), naming the help."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{message} (see {self.prog} --help)")


class _Lenient(argparse.ArgumentParser):
    """Finds ``run``'s target before the real parse; leaves every error to the real one."""

    def error(self, message: str) -> Any:
        raise PreParseError(message)


def _named_command(argv: list[str], registry: Registry) -> FlowCommand | None:
    """The bundled flow ``flowkit run NAME`` names, so its options join the parser."""
    if not argv or argv[0] != "run":
        return None
    pre = _Lenient(add_help=False)
    _generic_run_options(pre)
    try:
        known, _ = pre.parse_known_args(argv[1:])
    except PreParseError:
        return None
    return registry.get(known.target) if known.target in registry else None
