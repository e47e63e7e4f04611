"""What each ``flowkit`` subcommand does: run, list, graph, report, runs, export."""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import sys
import traceback
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from flowkit.cli.targets import (
    FAILED,
    OK,
    limits_from,
    load_target,
    missing_extra_for,
    set_executor,
    shared_from,
)
from flowkit.commands import FlowCommand, Registry
from flowkit.errors import CommandLoadError, FlowkitError, UsageError
from flowkit.graph import build_graph, to_mermaid
from flowkit.limits import Limit
from flowkit.redact import redact
from flowkit.results import RunInfo
from flowkit.runner import Runner
from flowkit.store import Store, StoreError


def run_flow(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    bare = [n for name, n in args.limit if name is None]
    args.limit_items = bare[-1] if bare else None
    kinds = [kind for name, kind in args.executor if name is None]
    args.executor_kind = kinds[-1] if kinds else None
    if args.executor_kind is not None and command is None:
        raise UsageError("a bare --executor KIND is for bundled flows; write NODE=KIND")
    shared: Any = {}
    limits: dict[str, int | Limit] = {}
    # What the flow is built from, recorded with the run: a resume must match it.
    settings: dict[str, Any] = command_settings(args) if command is not None else {}
    if command is not None:
        flow, shared = command.build(args)
        limits.update(command.limits(args))
    else:
        flow = load_target(args.target)
    if args.shared is not None:
        extra = shared_from(args.shared)
        shared = extra if shared is None else {**shared, **extra}
        settings["--shared"] = extra
    limits = limits_from(flow, limits, [(name, n) for name, n in args.limit if name is not None])
    for name, kind in args.executor:
        if name is not None:
            set_executor(flow, name, kind)
    store = None if args.no_store else args.store
    if args.resume is not None:
        if store is None:
            raise UsageError("--resume needs a store; drop --no-store")
        known_run(store, args.resume)
    if args.max_rss_mb is not None and args.max_rss_mb <= 0:
        raise UsageError("--max-rss-mb must be a positive number")
    runner = Runner(
        **(command.runner_options(args) if command is not None else {}),
        settings=settings,
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
        missing = missing_extra_for(exc, registry, command)
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
        if info is not None and store is not None and _resumable(exc, store, info.run_id):
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
    print(result_line(flow.name, info, args.report, code))
    return code


def command_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options a bundled flow's command was given (its own, not ``flowkit run``'s)."""
    generic = set(getattr(args, "generic_options", ())) | {
        "handler",
        "generic_options",
        "limit_items",
        "executor_kind",
    }
    return {f"--{k.replace('_', '-')}": v for k, v in vars(args).items() if k not in generic}


def _resumable(exc: BaseException, store: str, run_id: str) -> bool:
    """Whether to suggest resuming a failed run: something of it is stored, and the store
    itself did not fail (its error says what to do)."""
    if isinstance(exc, StoreError):
        return False
    try:
        with contextlib.closing(Store(store, readonly=True)) as opened:
            return opened.has_results(run_id)
    except (StoreError, OSError):
        return False


def list_flows(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
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


def draw_graph(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    if args.target in registry:
        flow = registry.get(args.target).graph()
    else:
        flow = load_target(args.target)
    print(to_mermaid(flow), end="")
    for problem in build_graph(flow).problems:
        print(f"flowkit: problem at {problem.node}: {problem.message}", file=sys.stderr)
    return OK


def show_report(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
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


def list_runs(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table("run", "flow", "started", "status", "done", "failed")
    with open_store(args.store) as store:
        for run in store.runs():
            started = datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(
                run.run_id, run.flow, started, run.status, f"{run.done:,}", f"{run.failed:,}"
            )
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    return OK


def export_run(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    known_run(args.store, args.run_id)
    out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        with open_store(args.store) as store:
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
def open_store(path: str) -> Iterator[Store]:
    """The store at ``path``, read-only; any store failure becomes one line (a UsageError)."""
    if not Path(path).exists():
        raise UsageError(f"no store at {path}; pass --store PATH")
    try:
        store = Store(path, readonly=True)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield store
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    finally:
        store.close()


def known_run(path: str, run_id: str) -> None:
    with open_store(path) as store:
        if not store.has_run(run_id):
            raise UsageError(f"run {run_id!r} is not in {path} (see `flowkit runs`)")


def result_line(flow: str, info: RunInfo, report: str | None, code: int) -> str:
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
