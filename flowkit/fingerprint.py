"""What a run was made by: its flow's nodes, their code and params, and the settings it was
built from, as a comparable fingerprint.

A run with a store records its fingerprint; ``--resume`` compares the current one with it
(``Fingerprint.compare``):

- another flow (a node added, removed or moved; a flow where a node was; other wiring) or
  other settings (the options a command built the flow from, e.g. ``--seed``) are refused:
  the stored results answer another question;
- a node whose class, code (its class body, and its base classes outside flowkit) or params
  changed runs all its items again: results the current code would not produce are never
  reused.

Code is compared by its syntax tree, so comments, blank lines and docstrings do not count.
Code a node calls elsewhere (helper functions, libraries, data files) is not covered: change
something in the class (a ``version = 2`` attribute, say) to make its items run again.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import hashlib
import inspect
import json
import os
import textwrap
import types
import weakref
from collections.abc import Mapping
from typing import Any

from flowkit.flow import Flow, Parallel
from flowkit.graph import build_graph
from flowkit.node import BaseNode
from flowkit.redact import redact

VERSION = 1


@dataclasses.dataclass(frozen=True)
class NodeMark:
    """One node of a fingerprint: its class and digests of its code and params."""

    cls: str
    code: str
    params: str


@dataclasses.dataclass(frozen=True)
class Change:
    """A node whose code or params changed since the run was stored."""

    path: str
    what: str  # what changed: "class", "code", "params", or several joined by "and"


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """A flow's nodes by path, its wiring, and the settings it was built from."""

    nodes: dict[str, NodeMark]
    edges: tuple[str, ...]
    settings: dict[str, str]

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": VERSION,
                "nodes": {p: dataclasses.asdict(m) for p, m in self.nodes.items()},
                "edges": list(self.edges),
                "settings": self.settings,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Fingerprint | None:
        """The fingerprint in ``text``; None when it is not one this flowkit reads."""
        try:
            data = json.loads(text)
            if data.get("version") != VERSION:
                return None
            return cls(
                nodes={p: NodeMark(**m) for p, m in data["nodes"].items()},
                edges=tuple(data["edges"]),
                settings=dict(data["settings"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def compare(self, stored: Fingerprint) -> tuple[str | None, list[Change]]:
        """Why a run stored with ``stored`` cannot be resumed by this flow (None if it can),
        and the nodes whose stored results must not be reused."""
        if self.settings != stored.settings:
            names = sorted(set(self.settings) | set(stored.settings))
            diffs = [
                f"{name} {stored.settings.get(name, '(unset)')} then, "
                f"{self.settings.get(name, '(unset)')} now"
                for name in names
                if self.settings.get(name) != stored.settings.get(name)
            ]
            return "it was started with other settings: " + "; ".join(diffs[:5]), []
        for path in sorted(set(stored.nodes) | set(self.nodes)):
            then, now = stored.nodes.get(path), self.nodes.get(path)
            if then is None or now is None or (then.code == "") != (now.code == ""):
                return "it was made by another flow: " + _moved(path, then, now), []
        if self.edges != stored.edges:
            gone = sorted(set(stored.edges) - set(self.edges))
            new = sorted(set(self.edges) - set(stored.edges))
            what = f"{gone[0]} is gone" if gone else f"{new[0]} is new"
            return f"it was made by another flow: the wiring differs ({what})", []
        changes: list[Change] = []
        for path, now in self.nodes.items():
            then = stored.nodes[path]
            pairs = (
                ("class", now.cls, then.cls),
                ("code", now.code, then.code),
                ("params", now.params, then.params),
            )
            changed = [w for w, a, b in pairs if a != b]
            if changed:
                changes.append(Change(path, " and ".join(changed)))
        return None, changes


def _moved(path: str, then: NodeMark | None, now: NodeMark | None) -> str:
    if now is None:
        return f"node {path!r} is not in this flow"
    if then is None:
        return f"node {path!r} ({now.cls}) is new"
    return f"{path!r} was a {then.cls}, now a {now.cls}"


def fingerprint(root: BaseNode, settings: Mapping[str, Any] | None = None) -> Fingerprint:
    """The fingerprint of ``root`` (a flow or a node) built with ``settings``."""
    graph = build_graph(root)
    paths = {g.id: g.path for g in graph.nodes}
    nodes: dict[str, NodeMark] = {}
    for g in graph.nodes:
        cls = type(g.node)
        name = f"{cls.__module__}.{cls.__qualname__}"
        if isinstance(g.node, Flow | Parallel):
            nodes[g.path] = NodeMark(name, "", "")
        else:
            nodes[g.path] = NodeMark(name, class_digest(cls), _digest(_canonical(g.node.params)))
    edges = tuple(sorted(f"{paths[e.src]} -{e.action}-> {paths[e.dst]}" for e in graph.edges))
    given = {name: redact(_canonical(value)) for name, value in (settings or {}).items()}
    return Fingerprint(nodes, edges, given)


def node_digest(node: BaseNode) -> str:
    """A digest of ``node``'s class, code and params: what a cached result of it is keyed by
    (the same marks a resume compares)."""
    return _digest(f"{class_digest(type(node))}:{_digest(_canonical(node.params))}")


def class_digest(cls: type) -> str:
    """A digest of the code of ``cls`` and of its base classes outside flowkit."""
    digest = _digests.get(cls)
    if digest is None:
        digest = _digests[cls] = _class_digest(cls)
    return digest


_digests: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()


def _class_digest(cls: type) -> str:
    parts = []
    for klass in cls.__mro__:
        module = klass.__module__ or ""
        if module in ("builtins", "abc", "typing") or module.split(".")[0] == "flowkit":
            continue
        parts.append(f"{module}.{klass.__qualname__}:{_class_code(klass)}")
    return _digest("\n".join(parts))


def _class_code(klass: type) -> str:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return _compiled(klass)  # no source (made at run time): its compiled code
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _compiled(klass: type) -> str:
    out = []
    for name, value in sorted(vars(klass).items()):
        fn = getattr(value, "__func__", value)
        if isinstance(fn, types.FunctionType):
            out.append(f"{name}={_code(fn.__code__)}")
        elif isinstance(value, str | int | float | bool | type(None)):
            out.append(f"{name}={value!r}")
    return ";".join(out)


def _code(code: types.CodeType) -> str:
    consts = [_code(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{consts}|{code.co_names}"


def _canonical(value: Any) -> str:
    """``value`` as canonical JSON; what JSON cannot hold is named by its type."""
    return json.dumps(value, sort_keys=True, default=_plain, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(map(repr, value))
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, enum.Enum):
        return value.value
    text = repr(value)
    return f"<{type(value).__qualname__}>" if " at 0x" in text else text


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
