"""What each ``flowkit`` subcommand does: run, list, graph, runs, export (report: ``reports``)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import importlib.util
import json
import os
import re
import shlex
import signal
import sys
import tempfile
import threading
import traceback
import uuid
import warnings
from collections.abc import Iterator
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from flowkit.cli.targets import (
    BUDGET,
    FAILED,
    INTERRUPTED,
    OK,
    limits_from,
    load_target,
    missing_extra_for,
    set_executor,
    shared_from,
    usable,
)
from flowkit.commands import OUT_ROOT, FlowCommand, Registry, output_dir, output_file
from flowkit.errors import (
    BudgetSpentError,
    CommandLoadError,
    ConfigError,
    FlowkitError,
    FlowkitWarning,
    GraphError,
    MissingExtraError,
    OutputError,
    UsageError,
)
from flowkit.graph import build_graph, to_mermaid
from flowkit.limits import Limit
from flowkit.node import BaseNode, node_options
from flowkit.redact import redact
from flowkit.results import RunInfo
from flowkit.runner import Runner
from flowkit.store import Store, StoreError

REPORT_FILES = ("report.json", "report.html", "report.png")


def run_flow(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    bare = [n for name, n in args.limit if name is None]
    args.limit_items = bare[-1] if bare else None
    kinds = [kind for name, kind in args.executor if name is None]
    args.executor_kind = kinds[-1] if kinds else None
    if args.executor_kind is not None and command is None:
        raise UsageError("a bare --executor KIND is for bundled flows; write NODE=KIND")
    if args.resume is not None and args.run_id is not None and args.run_id != args.resume:
        raise UsageError(
            "--resume RUN_ID continues that run under its own id; drop --run-id (or give "
            "the same id to both)"
        )
    if args.max_rss_mb is not None and args.max_rss_mb <= 0:
        raise UsageError("--max-rss-mb must be a positive number")
    store = None if args.no_store else args.store
    given = [getattr(args, name, None) for name in ("report", "output")]
    given += [str(Path(path).parent) for path in (store, args.cache) if path is not None]
    fresh = absent_folders([Path(OUT_ROOT), *(Path(p) for p in given if p is not None)])
    try:
        if store is not None:
            check_store_path(store)
        if args.cache is not None:
            check_store_path(args.cache, "--cache")
        if args.resume is not None:
            if store is None:
                raise UsageError("--resume needs a store; drop --no-store")
            known_run(store, args.resume)
    except BaseException:
        remove_empty(fresh)
        raise
    run_id = args.resume or args.run_id or uuid.uuid4().hex[:12]
    try:
        flow, shared, runner = prepare(args, command, store, run_id)
    except BaseException:
        remove_empty(fresh)  # a refused run leaves no empty folders behind
        raise
    try:
        with sigterm_as_interrupt():
            runner.run(flow, shared)
    except KeyboardInterrupt:
        info = runner.last_run
        print(interrupted_line(flow.name, info, store, run_id), file=sys.stderr)
        return INTERRUPTED
    except (ConfigError, GraphError) as exc:  # wiring or settings: what to fix, not a crash
        remove_empty(fresh)
        raise UsageError(str(exc)) from None
    except BudgetSpentError as exc:
        info = runner.last_run
        assert info is not None
        print(result_line(flow.name, info, BUDGET))
        print(redact(f"flowkit: {exc}; the calls in flight finished, no new one started"))
        if store is not None:
            print(f"flowkit: done items are stored; resume with a larger budget: --resume {run_id}")
        for line in where_lines(args.report, args.out_dir):
            print(line)
        return BUDGET
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
        if store is not None and _resumable(exc, store, run_id):
            print(
                f"flowkit: finished items are stored; resume with --resume {run_id}",
                file=sys.stderr,
            )
        if not isinstance(exc, OutputError):  # where to look, unless that is what was refused
            for line in where_lines(args.report, args.out_dir):
                print(line, file=sys.stderr)
        return FAILED
    info = runner.last_run
    assert info is not None
    code = command.finish(args, shared, info) if command is not None else OK
    rejected = command.rejected(args, shared) if command is not None else 0
    if code == OK and (rejected or any(n.failed for n in info.nodes.values())):
        code = FAILED  # a run with failed items or refused inputs is not ok
    print(result_line(flow.name, info, code, rejected))
    for line in where_lines(args.report, args.out_dir):
        print(line)
    return code


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While a run goes on, SIGTERM ends it as Ctrl-C does: calls in flight are cancelled,
    what finished is stored, and the last line says how to resume."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_line(name: str, info: RunInfo | None, store: str | None, run_id: str) -> str:
    """The last line of an interrupted run: what was done, and the command that resumes it."""
    done = sum(n.items for n in info.nodes.values()) if info is not None else 0
    took = f" after {info.wall_time:.2f} s" if info is not None else ""
    line = f"flowkit: interrupted {name}{took}: {done:,} items done"
    if store is None:
        return line + "; nothing was stored (--no-store): run it again to finish"
    argv = [a for a in sys.argv[1:] if a]
    for flag in ("--run-id", "--resume"):  # the resume command names the run once
        while flag in argv:
            at = argv.index(flag)
            del argv[at : at + 2]
        argv = [a for a in argv if not a.startswith(f"{flag}=")]
    command = shlex.join(["flowkit", *argv, "--resume", run_id])
    return line + f"; resume with: {command}"


def prepare(
    args: argparse.Namespace, command: FlowCommand | None, store: str | None, run_id: str
) -> tuple[BaseNode, Any, Runner]:
    """Build the flow, its shared store and its runner, refusing every bad setting and write
    target before any work starts."""
    shared: Any = {}
    limits: dict[str, int | Limit] = {}
    args.out_dir = None
    # What the flow is built from, recorded with the run: a resume must match it.
    settings: dict[str, Any] = command_settings(args) if command is not None else {}
    if command is not None:
        args.out_dir = Path(OUT_ROOT) / command.name / run_id
        flow, shared = command.build(args)
        limits.update(command.limits(args))
    else:
        flow = load_target(args.target)
    check_flow(flow, args.max_steps)
    if args.shared is not None:
        extra = shared_from(args.shared)
        shared = extra if shared is None else {**shared, **extra}
        settings["--shared"] = extra
    limits = limits_from(flow, limits, [(name, n) for name, n in args.limit if name is not None])
    budget = None
    if args.max_cost or args.max_calls or args.max_tokens:
        budget = Limit(max_calls=args.max_calls, max_tokens=args.max_tokens, max_cost=args.max_cost)
    timeouts = dict(args.timeout)
    known = {g.node.name for g in build_graph(flow).nodes if not g.is_container}
    for name in timeouts:
        if name not in known:
            raise UsageError(
                f"--timeout: no node named {name!r} in {flow.name}; its nodes: "
                f"{', '.join(sorted(known))}"
            )
    for name, kind in args.executor:
        if name is not None:
            set_executor(flow, name, kind)
    if args.report is not None:
        check_report_dir(args.report, "--report")
    runner = Runner(
        **(command.runner_options(args) if command is not None else {}),
        config=settings,
        limits=limits,
        progress=not args.no_progress,
        report=args.report,
        live=args.live,
        store=store,
        run_id=run_id,
        resume=args.resume,
        skip_failed=args.skip_failed,
        max_rss_mb=args.max_rss_mb,
        max_steps=args.max_steps,
        otel=args.otel,
        timeouts=timeouts,
        budget=budget,
        cache=args.cache,
    )
    return flow, shared, runner


def absent_folders(paths: list[Path]) -> list[Path]:
    """Each of ``paths`` and of its parents that does not exist yet, deepest first."""
    out: set[Path] = set()
    for path in paths:
        for folder in (path, *path.parents):
            if folder.exists() or folder.is_symlink():
                break
            out.add(folder)
    return sorted(out, key=lambda p: len(p.parts), reverse=True)


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders of ``folders`` (and folders in them) that are empty."""
    for folder in folders:
        for root, _, _ in os.walk(folder, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(root)  # only an empty folder goes


def check_flow(flow: BaseNode, max_steps: int | None) -> None:
    """Refuse, before any work, a flow that cannot run as wired or whose node settings are
    invalid; warn about a loop that nothing leaves unless ``--max-steps`` bounds it."""
    graph = build_graph(flow)
    for problem in graph.problems:
        if problem.kind == "nested":
            raise UsageError(f"{problem.node}: {problem.message}")
        if problem.kind == "endless" and max_steps is None:
            warnings.warn(f"{problem.node}: {problem.message}", FlowkitWarning, stacklevel=2)
    for g in graph.nodes:
        node_options(g.node, warn=False)  # a bad limit or executor is a ConfigError: exit 2


def check_store_path(path: str, option: str = "--store") -> None:
    """A store (or cache) path must name a file whose folder can be created and written."""
    if Path(path).is_dir():
        name = "runs.db" if option == "--store" else "cache.db"
        raise UsageError(f"{option}: {path} is a folder; give a file, e.g. {Path(path) / name}")
    try:
        output_dir(Path(path).parent, option)
    except UsageError as exc:
        fix = " or --no-store" if option == "--store" else ""
        raise UsageError(
            f"{exc} (the {option[2:]} is read-only there); pass {option} PATH somewhere "
            f"writable{fix}"
        ) from None


def check_report_dir(directory: str | Path, option: str) -> None:
    """Create the report folder now and check that each report file can be written there."""
    folder = output_dir(directory, option)
    for name in REPORT_FILES:
        output_file(folder / name, option)


def where_lines(report: str | None, out_dir: Path | None) -> list[str]:
    """Where to look after a run: the report page, then (last) the run's output folder."""
    lines = []
    if report is not None and (Path(report) / "report.html").is_file():
        lines.append(f"  report: {Path(report) / 'report.html'}")
    if out_dir is not None and Path(out_dir).is_dir():
        lines.append(f"  outputs: {str(out_dir).rstrip(os.sep) + os.sep}")
    elif out_dir is not None and Path(out_dir).is_file():
        lines.append(f"  outputs: {out_dir}")
    return lines


def command_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options a bundled flow's command was given (its own, not ``flowkit run``'s), less
    where its outputs go: a resume may write them elsewhere."""
    generic = set(getattr(args, "generic_options", ())) | {
        "handler",
        "generic_options",
        "limit_items",
        "executor_kind",
        "output",
        "out_dir",
        "report",
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
            missing = missing_requirements(registry.extra(name))
            if missing:
                extra = registry.extra(name)
                description = (
                    f"[needs pip install 'flowkit[{extra}]': {', '.join(missing)} missing] "
                    + description
                )
        except MissingExtraError as exc:
            description = f"[not installed: {redact(str(exc))}]"
        except CommandLoadError as exc:
            description = f"(cannot load: {redact(str(exc.__cause__ or exc))})"
        print(f"{name:<{width}}  {description}")
    return OK


def missing_requirements(extra: str | None) -> list[str]:
    """The packages of flowkit's ``extra`` that cannot be imported here (none when flowkit's
    metadata is not installed)."""
    if extra is None:
        return []
    try:
        requires = metadata.requires("flowkit") or []
    except metadata.PackageNotFoundError:
        return []
    missing = []
    for text in requires:
        name, _, marker = text.partition(";")
        if f'extra == "{extra}"' not in marker.replace("'", '"'):
            continue
        package = re.split(r"[\s<>=!~\[(]", name.strip(), maxsplit=1)[0]
        try:
            found = importlib.util.find_spec(package.replace("-", "_").lower()) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(package)
    return missing


def draw_graph(args: argparse.Namespace, registry: Registry, command: FlowCommand | None) -> int:
    if args.target in registry:
        flow = registry.get(args.target).graph()
    else:
        flow = load_target(args.target)
    print(to_mermaid(flow), end="")
    for problem in build_graph(flow).problems:
        kind = "warning:" if problem.kind == "endless" else "problem at"
        print(redact(f"flowkit: {kind} {problem.node}: {problem.message}"), file=sys.stderr)
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
    if args.output:
        output_file(args.output, "--output")
    with open_store(args.store) as store:
        if args.node is not None and next(store.results(args.run_id, node=args.node), None) is None:
            nodes = sorted({r.node.rpartition("/")[2] for r in store.results(args.run_id)})
            raise UsageError(
                f"--node: run {args.run_id} has no node {args.node!r} with stored results; "
                f"its nodes: {', '.join(nodes) or 'none'}"
            )
        with replacing(args.output) if args.output else contextlib.nullcontext(sys.stdout) as out:
            rows = store.results(args.run_id, node=args.node)
            if args.format == "jsonl":
                for r in rows:
                    out.write(json.dumps(dataclasses.asdict(r)) + "\n")
            else:
                writer = csv.writer(out)
                writer.writerow(["node", "item_key", "index", "ok", "value"])
                for r in rows:
                    writer.writerow([r.node, r.item_key, r.index, int(r.ok), json.dumps(r.value)])
    return OK


@contextlib.contextmanager
def replacing(path: str) -> Iterator[TextIO]:
    """Write a new ``path`` through a temporary file beside it, renamed over it at the end
    (never through a symbolic link; nothing left half-written on failure)."""
    target = output_file(path, "--output")
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def open_store(path: str) -> Iterator[Store]:
    """The store at ``path``, read-only; any store failure becomes one line (a UsageError)."""
    if not Path(path).exists():
        raise UsageError(f"no store at {path}; pass --store PATH")
    with usable(lambda: Store(path, readonly=True)) as store:
        yield store


def known_run(path: str, run_id: str) -> None:
    with open_store(path) as store:
        if not store.has_run(run_id):
            raise UsageError(f"run {run_id!r} is not in {path} (see `flowkit runs`)")


def result_line(flow: str, info: RunInfo, code: int, rejected: int = 0) -> str:
    """The end-of-run line: agrees with the exit code and counts retries inside exec too,
    and inputs refused before they became items."""
    nodes = info.nodes.values()
    items = sum(n.items for n in nodes)
    failed = sum(n.failed for n in nodes)
    retries = sum(n.retries + int(n.usage.get("llm_retries", 0)) for n in nodes)
    refused = f"{rejected:,} input{'' if rejected == 1 else 's'} rejected, " if rejected else ""
    word = "ok" if code == OK else "budget spent:" if code == BUDGET else "failed"
    line = (
        f"{word} {flow} in {info.wall_time:.2f} s: {items:,} "
        f"item{'' if items == 1 else 's'}, {failed:,} failed, {refused}{retries:,} "
        f"{'retry' if retries == 1 else 'retries'}; run {info.run_id}"
    )
    if info.resumed:
        line += f" ({info.resumed:,} reused from the store)"
    if info.cached:
        line += f" ({info.cached:,} from the cache)"
    timeouts = sum(n.timeouts for n in nodes)
    if timeouts:
        line += f"; {timeouts:,} tr{'y' if timeouts == 1 else 'ies'} timed out"
    for stats in info.limiters.values():
        if stats.calls:
            line += "\n  " + stats.line()
    for budget in info.budgets.values():
        line += "\n  " + budget.line()
    return line
