"""A flow's static graph: its nodes, nested flows and actions, as data and as Mermaid.

``build_graph`` walks a flow the way the runner will (start node, then successors; nested flows
and ``Parallel`` branches inside their parent) and records what cannot work as wired.
``to_mermaid`` draws it: actions on edges, nested flows and ``Parallel`` as subgraphs, and
parallel constructs marked with their executor and limit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from flowkit.flow import AsyncParallelBatchFlow, Flow, Parallel
from flowkit.node import (
    AsyncParallelBatchNode,
    BaseNode,
    BatchNode,
    node_options,
    successors_of,
)

ProblemKind = Literal["no_start", "unreachable", "shared", "nested", "endless"]


@dataclass(frozen=True)
class GraphNode:
    """One node or flow of the graph.

    ``id`` is stable for one build (``n1``, ``n2``, ...); ``path`` is the node's place in the
    graph as the runner's events name it; ``parent`` is the id of the enclosing flow or
    ``Parallel`` (None at the top level).
    """

    id: str
    node: BaseNode
    path: str
    parent: str | None

    @property
    def is_container(self) -> bool:
        """Whether the node holds other nodes (a flow or a ``Parallel``)."""
        return isinstance(self.node, Flow | Parallel)


@dataclass(frozen=True)
class Edge:
    """``src`` leads to ``dst`` when its post returns ``action``."""

    src: str
    dst: str
    action: str


@dataclass(frozen=True)
class Problem:
    """Something in the wiring that cannot work as written; ``node`` is a path."""

    kind: ProblemKind
    node: str
    message: str


@dataclass
class Graph:
    """Everything reachable from a root, in the order the walk met it."""

    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def children(self, parent: str | None) -> list[GraphNode]:
        """Nodes directly inside ``parent`` (None: the top level)."""
        return [g for g in self.nodes if g.parent == parent]

    def find(self, node: BaseNode) -> GraphNode | None:
        """The entry for this node instance, if the walk reached it."""
        return next((g for g in self.nodes if g.node is node), None)


def build_graph(root: BaseNode) -> Graph:
    """Walk ``root`` (a flow or a node) and return its graph and problems."""
    return _Walker(root).graph


def problems(root: BaseNode) -> list[Problem]:
    """What cannot work in ``root``'s wiring: flows without a start, successors that never
    run (after a ``Parallel`` branch), node instances wired into two flows, a flow wired
    into itself, and loops with no way out ("endless": a warning, since a post may still
    end the flow by returning an action nothing is wired to)."""
    return build_graph(root).problems


def is_parallel(node: BaseNode) -> bool:
    """Whether the runner may run several of this node's items (or sub-flows) at once."""
    if isinstance(node, AsyncParallelBatchFlow | Parallel | AsyncParallelBatchNode):
        return True
    executor = node_options(node, warn=False).executor
    return isinstance(node, BatchNode) and executor not in (None, "async")


class _Walker:
    def __init__(self, root: BaseNode) -> None:
        self.graph = Graph()
        self._seen: dict[int, GraphNode] = {}
        self._by_id: dict[str, GraphNode] = {}
        top = self._add(root, root.name, None)
        self._expand(top)

    def _add(self, node: BaseNode, path: str, parent: str | None) -> GraphNode:
        g = GraphNode(f"n{len(self.graph.nodes) + 1}", node, path, parent)
        self.graph.nodes.append(g)
        self._seen[id(node)] = g
        self._by_id[g.id] = g
        return g

    def _problem(self, kind: ProblemKind, node: str, message: str) -> None:
        problem = Problem(kind, node, message)
        if problem not in self.graph.problems:  # the walk may meet one wiring twice
            self.graph.problems.append(problem)

    def _expand(self, g: GraphNode) -> None:
        if isinstance(g.node, Flow):
            self._walk_flow(g.node, g)
        elif isinstance(g.node, Parallel):
            for branch in g.node.branches:
                child = self._place(branch, g)
                for action, lost in successors_of(branch):
                    self._problem(
                        "unreachable",
                        child.path,
                        f"{lost.name} follows Parallel branch {branch.name} (action "
                        f"{action!r}) but never runs: Parallel runs each branch alone. Wrap "
                        f"the chain in a Flow and pass that flow as the branch",
                    )

    def _place(self, node: BaseNode, parent: GraphNode) -> GraphNode:
        """Add ``node`` inside ``parent``, or report it if another container already has it."""
        known = self._seen.get(id(node))
        if known is not None:
            chain = self._ancestors(parent)
            if known in chain:
                names = " -> ".join(
                    g.node.name for g in [*reversed(chain[: chain.index(known) + 1]), known]
                )
                self._problem(
                    "nested",
                    known.path,
                    f"flow {node.name} is wired into itself ({names}), so running it would "
                    f"never end; use a new {type(node).__name__} instance inside",
                )
            elif known.parent != parent.id:
                self._problem(
                    "shared",
                    known.path,
                    f"the same {node.name} instance is wired into {parent.path} too; its "
                    f"successors apply in both places. Use a separate instance in each flow",
                )
            return known
        g = self._add(node, f"{parent.path}/{node.name}", parent.id)
        self._expand(g)
        return g

    def _ancestors(self, g: GraphNode) -> list[GraphNode]:
        """``g`` and the containers around it, innermost first."""
        chain = [g]
        while chain[-1].parent is not None:
            chain.append(self._by_id[chain[-1].parent])
        return chain

    def _endless_loops(self, flow: Flow, g: GraphNode) -> None:
        """Warn about each loop among ``flow``'s nodes that no wired action leaves."""
        inside = {c.id for c in self.graph.children(g.id)}
        nxt: dict[str, list[str]] = {}
        for edge in self.graph.edges:
            if edge.src in inside:
                nxt.setdefault(edge.src, []).append(edge.dst)
        for loop in _strongly_connected(sorted(inside), nxt):
            cyclic = len(loop) > 1 or loop[0] in nxt.get(loop[0], [])
            leaves = any(dst not in loop for src in loop for dst in nxt.get(src, []))
            if not cyclic or leaves or flow.max_steps is not None:
                continue
            by_id = self._by_id
            names = [by_id[i].node.name for i in loop]
            self._problem(
                "endless",
                by_id[loop[0]].path,
                f"the loop {' -> '.join([*names, names[0]])} has no way out: every action "
                "wired from it leads back into it, so the flow ends only if a post returns "
                'an action nothing is wired to. Wire an exit (node - "done" >> next), or '
                "bound it with Flow(max_steps=N), Runner(max_steps=N) or flowkit run "
                "--max-steps N",
            )

    def _walk_flow(self, flow: Flow, g: GraphNode) -> None:
        if not isinstance(flow.start_node, BaseNode):
            self._problem(
                "no_start", g.path, f"flow {flow.name} has no start node, so it leads nowhere"
            )
            return
        queue = deque([flow.start_node])
        done: set[int] = set()
        while queue:
            node = queue.popleft()
            if id(node) in done:
                continue
            done.add(id(node))
            src = self._place(node, g)
            for action, nxt in successors_of(node):
                dst = self._place(nxt, g)
                label = action if isinstance(action, str) else repr(action)
                self.graph.edges.append(Edge(src.id, dst.id, label))
                queue.append(nxt)
        self._endless_loops(flow, g)


def _strongly_connected(ids: list[str], nxt: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of a small graph (Tarjan, iterative), each in
    the order its nodes were first met."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in ids:
        if root in index:
            continue
        work = [(root, iter(nxt.get(root, [])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(nxt.get(w, []))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    out.append(sorted(component, key=lambda i: index[i]))
    return out


# -- Mermaid ---------------------------------------------------------------------------------


def to_mermaid(root: BaseNode) -> str:
    """A Mermaid flowchart of ``root``; problems are appended as ``%%`` comments."""
    graph = build_graph(root)
    lines = ["flowchart TD"]
    top = graph.nodes[0]
    if top.is_container:
        lines.append(f"  %% {_escape(top.node.name)}: {_details(top.node) or 'flow'}")
        for child in graph.children(top.id):
            _declare(graph, child, lines, "  ")
    else:
        _declare(graph, top, lines, "  ")
    for edge in graph.edges:
        arrow = "-->" if edge.action == "default" else f'-->|"{_escape(edge.action)}"|'
        lines.append(f"  {edge.src} {arrow} {edge.dst}")
    starts = [
        start.id
        for g in graph.nodes
        if isinstance(g.node, Flow)
        and g.node.start_node is not None
        and (start := graph.find(g.node.start_node)) is not None
    ]
    parallel = [g.id for g in graph.nodes[1:] if is_parallel(g.node)]
    lines.append("  classDef fkstart stroke-width:3px")
    lines.append("  classDef fkparallel fill:#e6f0ff,stroke:#2f6fd6,stroke-width:2px")
    if starts:
        lines.append(f"  class {','.join(starts)} fkstart")
    if parallel:
        lines.append(f"  class {','.join(parallel)} fkparallel")
    lines.extend(f"  %% problem: {_escape(p.message)}" for p in graph.problems)
    return "\n".join(lines) + "\n"


def _declare(graph: Graph, g: GraphNode, lines: list[str], indent: str) -> None:
    label = _escape(g.node.name)
    details = _details(g.node)
    if details:
        label += f"<br/>{_escape(details)}"
    if g.is_container:
        lines.append(f'{indent}subgraph {g.id} ["{label}"]')
        lines.append(f"{indent}  direction TB")
        for child in graph.children(g.id):
            _declare(graph, child, lines, indent + "  ")
        lines.append(f"{indent}end")
    elif is_parallel(g.node):
        lines.append(f'{indent}{g.id}[["{label}"]]')
    else:
        lines.append(f'{indent}{g.id}["{label}"]')


def _details(node: BaseNode) -> str:
    """The second label line: class (unless it is the name), and how the runner runs it."""
    kind = type(node).__name__
    parts = [] if kind == node.name else [kind]
    if isinstance(node, Parallel):
        parts.append(f"{len(node.branches)} branches")
    if is_parallel(node):
        parts.append("parallel")
    options = node_options(node, warn=False)
    if options.executor not in (None, "async"):
        parts.append(f"executor={options.executor}")
    if options.max_concurrency is not None:
        parts.append(f"limit={options.max_concurrency}")
    if options.uses:
        parts.append(f"uses={','.join(options.uses)}")
    return " · ".join(parts)


_ENTITIES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "|": "#124;"}


def _escape(text: str) -> str:
    """Make ``text`` safe inside a quoted Mermaid label (entity codes, one line)."""
    return "".join(_ENTITIES.get(ch, ch) for ch in " ".join(text.splitlines()))
