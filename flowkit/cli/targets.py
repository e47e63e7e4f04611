"""What a ``flowkit run`` command line names: the flow, its executors, limits and shared state;
the stores and caches other commands open."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

from flowkit.commands import FlowCommand, Registry, read_text_file
from flowkit.errors import MissingExtraError, StoreError, UsageError
from flowkit.extras import as_missing_extra
from flowkit.graph import build_graph
from flowkit.limits import Limit
from flowkit.node import BaseNode, node_options

OK, FAILED, USAGE, BUDGET = 0, 1, 2, 3
INTERRUPTED = 130
"""Exit status of a run ended by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)."""
DEFAULT_STORE = os.path.join(".flowkit", "runs.db")
DEFAULT_CACHE = os.path.join(".flowkit", "cache.db")


class _Closable(Protocol):
    def close(self) -> None: ...


D = TypeVar("D", bound=_Closable)


@contextlib.contextmanager
def usable(open_db: Callable[[], D]) -> Iterator[D]:
    """``open_db()`` (a store or a cache), closed after use; a ``StoreError`` while opening or
    using it becomes one line (a ``UsageError``)."""
    try:
        db = open_db()
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield db
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    finally:
        db.close()


def load_target(spec: str) -> BaseNode:
    """The flow or node ``MODULE:ATTR`` or ``path/to/file.py:ATTR`` names (calling it if it
    is a zero-argument factory)."""
    module_name, colon, attr = spec.rpartition(":")
    if not colon or not module_name or not attr:
        raise UsageError(
            f"unknown flow {spec!r}: not a bundled flow (see `flowkit list`) nor MODULE:ATTR "
            "or FILE.py:ATTR"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        obj = _import_file(Path(module_name))
    else:
        try:
            obj = importlib.import_module(module_name)
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


def _import_file(path: Path) -> ModuleType:
    """Import a Python file as the module named by its stem, its folder made importable (so
    its own imports work, and worker processes can import its nodes by name)."""
    if path.suffix != ".py":
        raise UsageError(f"{path}: a flow file must end in .py (or name a MODULE:ATTR)")
    if not path.is_file():
        raise UsageError(f"no such file {path}")
    name = path.stem
    if not name.isidentifier():
        raise UsageError(f"{path}: its name is not a Python module name (letters, digits, _)")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    known = sys.modules.get(name)
    if known is not None:
        if Path(getattr(known, "__file__", "") or "").resolve() == path.resolve():
            return known
        raise UsageError(
            f"{path}: a module named {name!r} is already imported from elsewhere; rename the file"
        )
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def set_executor(flow: BaseNode, name: str, kind: str) -> None:
    """Run every node called ``name`` in ``flow``'s graph on executor ``kind``."""
    nodes = [g.node for g in build_graph(flow).nodes if not g.is_container]
    matching = [node for node in nodes if node.name == name]
    if not matching:
        known = ", ".join(sorted({node.name for node in nodes}))
        raise UsageError(f"--executor: no node named {name!r} in {flow.name}; its nodes: {known}")
    for node in matching:
        node.executor = kind


def limits_from(
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


def shared_from(value: str) -> Any:
    """The ``--shared`` object: inline JSON, or ``@FILE`` holding it (UTF-8)."""
    if value.startswith("@"):
        value = read_text_file(value[1:], "--shared")
    try:
        shared = json.loads(value)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--shared: not valid JSON: {exc}") from None
    if not isinstance(shared, dict):
        raise UsageError(f"--shared: expected a JSON object, got {type(shared).__name__}")
    return shared


def missing_extra_for(
    exc: BaseException, registry: Registry, command: FlowCommand | None
) -> MissingExtraError | None:
    """The missing optional package behind ``exc``, naming the extra that installs it."""
    if command is None:
        return as_missing_extra(exc, None, "this flow")
    extra = command.extra or registry.extra(command.name)
    return as_missing_extra(exc, extra, f"flowkit run {command.name}")
