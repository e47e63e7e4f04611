"""The ``flowkit`` command: run a flow, list the bundled ones, draw a graph, render a report.

Exit codes: 0 ok, 1 the run failed, 2 bad usage (unknown flow or option, bad ``--limit``
syntax, a missing file). A flow is a bundled NAME (``flowkit list``) or ``MODULE:ATTR``
naming a flow or node, or a zero-argument factory returning one; the current directory is
importable. Everything printed about errors goes through ``flowkit.redact``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import importlib
import json
import os
import sys
import traceback
import warnings
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from flowkit.commands import CommandLoadError, FlowCommand, Registry, UsageError
from flowkit.errors import FlowkitError, FlowkitWarning, MissingExtraError
from flowkit.extras import as_missing_extra
from flowkit.graph import build_graph, to_mermaid
from flowkit.limits import Limit
from flowkit.node import EXECUTORS, BaseNode, node_options
from flowkit.redact import redact
from flowkit.runner import RunInfo, Runner
from flowkit.store import Store, StoreError

OK, FAILED, USAGE = 0, 1, 2
DEFAULT_STORE = os.path.join(".flowkit", "runs.db")




def main(argv: Sequence[str] | None = None, commands: Iterable[FlowCommand] | None = None) -> int:
    """Run the ``flowkit`` command line; returns the exit status.

    ``commands`` replaces the flows found through entry points (tests, embedding).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _main(argv, commands)


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
    except (UsageError, CommandLoadError, MissingExtraError) as exc:
        print(f"flowkit: error: {redact(str(exc))}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print("flowkit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a flow that fails to import or build
        missing = _missing_extra(exc, registry, command)
        if missing is not None:
            print(f"flowkit: error: {missing}", file=sys.stderr)
            return USAGE
        print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        return FAILED


def _missing_extra(
    exc: BaseException, registry: Registry, command: FlowCommand | None
) -> MissingExtraError | None:
    """The missing optional package behind ``exc``, naming the extra that installs it."""
    if command is None:
        return as_missing_extra(exc, None, "this flow")
    extra = command.extra or registry.extra(command.name)
    return as_missing_extra(exc, extra, f"flowkit run {command.name}")


# -- parsing ----------------------------------------------------------------------------------


def _parser(registry: Registry, command: FlowCommand | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowkit", description="Run flowkit flows and look at how they ran."
    )
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
    run.set_defaults(handler=_run)

    listing = sub.add_parser(
        "list",
        help="list the bundled flows",
        description="List the bundled flows (registered under the 'flowkit.flows' entry points).",
    )
    listing.set_defaults(handler=_list)

    graph = sub.add_parser(
        "graph",
        help="print a flow as a Mermaid flowchart",
        description="Print a flow as a Mermaid flowchart; wiring problems go to stderr.",
    )
    graph.add_argument("target", metavar="NAME|MODULE:ATTR")
    graph.set_defaults(handler=_graph)

    report = sub.add_parser(
        "report",
        help="re-render a run report and summarise it",
        description="Re-render DIR/report.html (and .png) from DIR/report.json and print a "
        "summary table.",
    )
    report.add_argument("directory", metavar="DIR")
    report.set_defaults(handler=_report)

    runs = sub.add_parser(
        "runs",
        help="list the runs in a checkpoint store",
        description="List the runs in a store: id, flow, started, status, items done/failed.",
    )
    _store_option(runs)
    runs.set_defaults(handler=_runs)

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
    export.set_defaults(handler=_export)
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
    parser.add_argument("--report", metavar="DIR", help="write report.json/.html/.png into DIR")
    parser.add_argument("--no-progress", action="store_true", help="print no progress")
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
        "--max-rss-mb",
        type=float,
        metavar="MB",
        help="admit no new items while resident memory is above MB",
    )


def _limit(text: str) -> tuple[str | None, int]:
    name, eq, number = text.rpartition("=")
    if (eq and not name) or not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(
            f"expected NODE=N or N with N a positive integer, got {text!r}"
        )
    return (name if eq else None), int(number)


def _executor(text: str) -> tuple[str | None, str]:
    name, eq, kind = text.rpartition("=")
    if not eq and text in (*EXECUTORS, "sequential"):
        return None, text  # a bare KIND: for the bundled flow to use
    if not eq or not name or kind not in EXECUTORS:
        raise argparse.ArgumentTypeError(
            f"expected NODE=KIND with KIND one of {', '.join(EXECUTORS)}, got {text!r}"
        )
    return name, kind


class _PreParseError(Exception):
    pass


class _Lenient(argparse.ArgumentParser):
    """Finds ``run``'s target before the real parse; leaves every error to the real one."""

    def error(self, message: str) -> Any:
        raise _PreParseError(message)


def _named_command(argv: list[str], registry: Registry) -> FlowCommand | None:
    """The bundled flow ``flowkit run NAME`` names, so its options join the parser."""
    if not argv or argv[0] != "run":
        return None
    pre = _Lenient(add_help=False)
    _generic_run_options(pre)
    try:
        known, _ = pre.parse_known_args(argv[1:])
    except _PreParseError:
        return None
    return registry.get(known.target) if known.target in registry else None


# -- commands ---------------------------------------------------------------------------------


def _run(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    bare = [n for name, n in args.limit if name is None]
    args.limit_items = bare[-1] if bare else None
    kinds = [kind for name, kind in args.executor if name is None]
    args.executor_kind = kinds[-1] if kinds else None
    if args.executor_kind is not None and command is None:
        raise UsageError("a bare --executor KIND is for bundled flows; write NODE=KIND")
    shared: Any = {}
    limits: dict[str, int | Limit] = {}
    if command is not None:
        flow, shared = command.build(args)
        limits.update(command.limits(args))
    else:
        flow = load_target(args.target)
    if args.shared is not None:
        extra = _shared(args.shared)
        shared = extra if shared is None else {**shared, **extra}
    limits = _limits(flow, limits, [(name, n) for name, n in args.limit if name is not None])
    for name, kind in args.executor:
        if name is not None:
            set_executor(flow, name, kind)
    store = None if args.no_store else args.store
    if args.resume is not None:
        if store is None:
            raise UsageError("--resume needs a store; drop --no-store")
        _known_run(store, args.resume)
    if args.max_rss_mb is not None and args.max_rss_mb <= 0:
        raise UsageError("--max-rss-mb must be a positive number")
    runner = Runner(
        **(command.runner_options(args) if command is not None else {}),
        limits=limits,
        progress=not args.no_progress,
        report=args.report,
        store=store,
        run_id=args.run_id,
        resume=args.resume,
        skip_failed=args.skip_failed,
        max_rss_mb=args.max_rss_mb,
    )
    try:
        runner.run(flow, shared)
    except Exception as exc:
        missing = _missing_extra(exc, registry, command)
        if missing is not None:
            raise missing from exc
        info = runner.last_run
        if not isinstance(exc, FlowkitError):  # flowkit's own messages say what to fix
            print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        took = f" after {info.wall_time:.2f} s" if info else ""
        print(
            redact(f"flowkit: {flow.name} failed{took}: {type(exc).__name__}: {exc}"),
            file=sys.stderr,
        )
        if info is not None and store is not None:
            print(
                f"flowkit: finished items are stored; resume with --resume {info.run_id}",
                file=sys.stderr,
            )
        return FAILED
    info = runner.last_run
    assert info is not None
    code = command.finish(args, shared, info) if command is not None else OK
    if code == OK and any(n.failed for n in info.nodes.values()):
        code = FAILED  # a run with failed items is not ok
    print(_result_line(flow.name, info, args.report, code))
    return code


def _list(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    names = registry.names()
    if not names:
        print("no bundled flows installed (flows register under the 'flowkit.flows' entry points)")
        return OK
    width = max(map(len, names))
    for name in names:
        try:
            description = registry.get(name).description
        except CommandLoadError as exc:
            description = f"(cannot load: {redact(str(exc.__cause__ or exc))})"
        print(f"{name:<{width}}  {description}")
    return OK


def _graph(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    if args.target in registry:
        flow = registry.get(args.target).graph()
    else:
        flow = load_target(args.target)
    print(to_mermaid(flow), end="")
    for problem in build_graph(flow).problems:
        print(f"flowkit: problem at {problem.node}: {problem.message}", file=sys.stderr)
    return OK


def _report(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    from pydantic import ValidationError
    from rich.console import Console

    from flowkit.report import limiter_table, load_report, render_files, summary_table

    try:
        report = load_report(args.directory)
    except FileNotFoundError:
        raise UsageError(f"no report.json in {args.directory}") from None
    except ValidationError as exc:
        raise UsageError(f"{args.directory}/report.json is not a flowkit report: {exc}") from None
    written = render_files(report, args.directory)
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(summary_table(report))
    limiters = limiter_table(report)
    if limiters is not None:
        console.print(limiters)
    for node in report.nodes:
        for finding in node.findings:
            console.print(f"[yellow]{node.name}[/]: {finding}", highlight=False)
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)
    return OK


def _runs(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table("run", "flow", "started", "status", "done", "failed")
    with _open_store(args.store) as store:
        for run in store.runs():
            started = datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(
                run.run_id, run.flow, started, run.status, f"{run.done:,}", f"{run.failed:,}"
            )
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    return OK


def _export(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    _known_run(args.store, args.run_id)
    out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        with _open_store(args.store) as store:
            rows = store.results(args.run_id, node=args.node)
            if args.format == "jsonl":
                for r in rows:
                    out.write(json.dumps(dataclasses.asdict(r)) + "\n")
            else:
                writer = csv.writer(out)
                writer.writerow(["node", "item_key", "index", "ok", "value"])
                for r in rows:
                    writer.writerow([r.node, r.item_key, r.index, int(r.ok), json.dumps(r.value)])
    finally:
        if out is not sys.stdout:
            out.close()
    return OK


@contextlib.contextmanager
def _open_store(path: str) -> Iterator[Store]:
    if not Path(path).exists():
        raise UsageError(f"no store at {path}; pass --store PATH")
    try:
        store = Store(path)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield store
    finally:
        store.close()


def _known_run(path: str, run_id: str) -> None:
    with _open_store(path) as store:
        if not any(r.run_id == run_id for r in store.runs()):
            raise UsageError(f"run {run_id!r} is not in {path} (see `flowkit runs`)")


# -- helpers ----------------------------------------------------------------------------------


def load_target(spec: str) -> BaseNode:
    """The flow or node ``MODULE:ATTR`` names (calling it if it is a zero-argument factory)."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise UsageError(
            f"unknown flow {spec!r}: not a bundled flow (see `flowkit list`) nor MODULE:ATTR"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            raise UsageError(f"cannot import module {module_name!r}: {exc}") from None
        raise
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, BaseNode) and callable(obj):
        obj = obj()
    if not isinstance(obj, BaseNode):
        raise UsageError(
            f"{spec} is a {type(obj).__name__}, not a flow or node (nor a zero-argument "
            "factory returning one)"
        )
    return obj


def set_executor(flow: BaseNode, name: str, kind: str) -> None:
    """Run every node called ``name`` in ``flow``'s graph on executor ``kind``."""
    nodes = [g.node for g in build_graph(flow).nodes if not g.is_container]
    matching = [node for node in nodes if node.name == name]
    if not matching:
        known = ", ".join(sorted({node.name for node in nodes}))
        raise UsageError(f"--executor: no node named {name!r} in {flow.name}; its nodes: {known}")
    for node in matching:
        node.executor = kind


def _limits(
    flow: BaseNode, limits: dict[str, int | Limit], caps: Iterable[tuple[str, int]]
) -> dict[str, int | Limit]:
    """Runner limits: each ``--limit NAME=N`` caps a node, or a named limiter's concurrency.

    A limiter the flow uses but nothing defines is a usage error, found before the run.
    """
    nodes = [g.node for g in build_graph(flow).nodes if not g.is_container]
    node_names = {node.name for node in nodes}
    limiter_names = {name for node in nodes for name in node_options(node, warn=False).uses}
    limiter_names |= {name for name, value in limits.items() if isinstance(value, Limit)}
    out = dict(limits)
    for name, n in caps:
        if name in node_names:
            out[name] = n
        elif name in limiter_names:
            given = out.get(name)
            out[name] = (
                dataclasses.replace(given, max_concurrency=n)
                if isinstance(given, Limit)
                else Limit(max_concurrency=n)
            )
        else:
            raise UsageError(
                f"--limit: no node or limiter named {name!r} in {flow.name}; nodes: "
                f"{', '.join(sorted(node_names))}; limiters: "
                f"{', '.join(sorted(limiter_names)) or 'none'}"
            )
    missing = sorted(limiter_names - set(out))
    if missing:
        raise UsageError(
            f"{flow.name} uses limiter(s) {', '.join(map(repr, missing))}, which nothing "
            f"defines: give each a concurrency with --limit {missing[0]}=N"
        )
    return out


def _shared(value: str) -> Any:
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            value = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--shared: cannot read {path}: {exc.strerror}") from None
    try:
        shared = json.loads(value)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--shared: not valid JSON: {exc}") from None
    if not isinstance(shared, dict):
        raise UsageError(f"--shared: expected a JSON object, got {type(shared).__name__}")
    return shared


def _result_line(flow: str, info: RunInfo, report: str | None, code: int) -> str:
    """The end-of-run line: agrees with the exit code and counts retries inside exec too."""
    nodes = info.nodes.values()
    items = sum(n.items for n in nodes)
    failed = sum(n.failed for n in nodes)
    retries = sum(n.retries + int(n.usage.get("llm_retries", 0)) for n in nodes)
    line = (
        f"{'ok' if code == OK else 'failed'} {flow} in {info.wall_time:.2f} s: {items:,} "
        f"item{'' if items == 1 else 's'}, {failed:,} failed, {retries:,} "
        f"{'retry' if retries == 1 else 'retries'}; run {info.run_id}"
    )
    if info.resumed:
        line += f" ({info.resumed:,} reused from the store)"
    for stats in info.limiters.values():
        if stats.calls:
            line += "\n  " + stats.line()
    if report:
        line += f"\n  report: {Path(report) / 'report.html'}"
    return line


if __name__ == "__main__":
    sys.exit(main())
