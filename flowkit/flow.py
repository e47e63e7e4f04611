"""Flows: graphs of nodes joined by actions. A flow is a node too, so flows nest.

The walking itself lives in the runner; these classes hold the graph and the hooks, with
PocketFlow's names and return values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flowkit.errors import ConfigError, FlowkitWarning, FlowStructureError, GraphError
from flowkit.limits import check_limit
from flowkit.node import AsyncNode, BaseNode

__all__ = [
    "AsyncBatchFlow",
    "AsyncFlow",
    "AsyncParallelBatchFlow",
    "BatchFlow",
    "Flow",
    "Parallel",
]


class Flow(BaseNode):
    """Runs from ``start`` and follows the action each node's post returns.

    ``max_steps`` bounds the number of nodes run by one pass of the flow (a guard against
    cycles that never end); None means no bound.
    """

    max_steps: int | None = None

    def __init__(
        self, start: BaseNode | None = None, *, max_steps: int | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        _check_start(self, start)
        self.start_node = start
        if max_steps is not None:
            self.max_steps = check_limit(max_steps, f"{self.name}: max_steps")

    def start(self, start: BaseNode) -> BaseNode:
        _check_start(self, start)
        self.start_node = start
        return start

    def get_next_node(self, curr: BaseNode, action: Any) -> BaseNode | None:
        nxt = curr.successors.get(action or "default")
        if not nxt and curr.successors:
            warnings.warn(
                f"Flow ends: '{action}' not found in {list(curr.successors)}", stacklevel=2
            )
        return nxt

    def first_node(self) -> BaseNode | None:
        """The start node; with none, a run of the flow runs nothing (as in PocketFlow) and
        says so with a FlowkitWarning."""
        if self.start_node is None:
            warnings.warn(
                f"{self.name} has no start node, so it runs nothing: pass "
                f"{type(self).__name__}(start=node) or call flow.start(node)",
                FlowkitWarning,
                stacklevel=4,
            )
        return self.start_node

    def post(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return exec_res


class BatchFlow(Flow):
    """Runs the flow once per params dict that prep returns, one after another."""

    def post(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return None


class AsyncFlow(Flow, AsyncNode):
    """A flow with async hooks; may hold both sync and async nodes."""

    async def post_async(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return exec_res

    _noun = "flow"


class AsyncBatchFlow(AsyncFlow, BatchFlow):
    """Runs the sub-flow once per params dict, one after another."""

    async def post_async(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return None


class AsyncParallelBatchFlow(AsyncFlow, BatchFlow):
    """Runs the sub-flow once per params dict, at most ``max_concurrency`` at once.

    Each run works on its own copies of the nodes and its own params dict.
    """

    async def post_async(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return None


Reducer = Callable[[Any, dict[str, dict[str, Any]]], None]


class Parallel(AsyncNode):
    """Runs different branches (nodes or flows) at once and joins them.

    Each branch sees a copy of ``shared`` taken at the fork and writes into that copy, so
    branches never race on shared keys. At the join, each branch's updates (keys it added or
    replaced) are delivered one of three ways:

    - ``reducer(shared, {branch_name: updates})`` when a reducer is given;
    - ``shared[into] = {branch_name: updates}`` when ``into`` is given;
    - otherwise merged into ``shared``; two branches setting one key to different values is
      an error naming both branches.

    Objects mutated in place (``shared["list"].append``) are shared by all branches: give each
    branch its own key instead. ``max_concurrency`` bounds branches in flight. post returns
    ``action``.
    """

    def __init__(
        self,
        *branches: BaseNode,
        names: Iterable[str] | None = None,
        into: str | None = None,
        reducer: Reducer | None = None,
        action: str = "default",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not branches:
            raise GraphError(f"{self.name}: Parallel needs at least one branch")
        for i, branch in enumerate(branches):
            if not isinstance(branch, BaseNode):
                raise GraphError(
                    f"{self.name}: branch {i} must be a node or flow, got "
                    f"{type(branch).__name__} {branch!r}"
                )
        self.branches = tuple(branches)
        self.branch_names = tuple(names) if names is not None else _unique_names(branches)
        if len(self.branch_names) != len(branches) or len(set(self.branch_names)) != len(branches):
            raise ConfigError(f"{self.name}: names must be unique, one per branch")
        if into is not None and reducer is not None:
            raise ConfigError(f"{self.name}: give either into= or reducer=, not both")
        self.into, self.reducer, self.action = into, reducer, action

    def join(self, shared: Any, updates: Mapping[str, dict[str, Any]]) -> None:
        """Deliver each branch's updates into ``shared``."""
        if self.reducer is not None:
            self.reducer(shared, dict(updates))
        elif self.into is not None:
            shared[self.into] = dict(updates)
        else:
            owner: dict[str, str] = {}
            for branch, changed in updates.items():
                for key, value in changed.items():
                    if key in owner and shared[key] is not value and shared[key] != value:
                        raise FlowStructureError(
                            f"{self.name}: branches {owner[key]!r} and {branch!r} both set "
                            f"shared[{key!r}]; give them different keys, or pass into= or "
                            "reducer= to Parallel"
                        )
                    owner[key] = branch
                    shared[key] = value

    async def post_async(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return self.action


def _unique_names(branches: Iterable[BaseNode]) -> tuple[str, ...]:
    names: list[str] = []
    for branch in branches:
        base, n = branch.name, 1
        name = base
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return tuple(names)


def _check_start(flow: Flow, start: object) -> None:
    if start is not None and not isinstance(start, BaseNode):
        warnings.warn(
            f"{flow.name}: its start is a {type(start).__name__}, not a node or flow; the "
            "flow fails when it runs. Pass a node or flow",
            FlowkitWarning,
            stacklevel=4,
        )
