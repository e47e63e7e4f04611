"""The graph walk: a node's prep, exec and post; a flow's steps from node to node by action;
batch flows' sub-flows and ``Parallel``'s branches, each on its own lanes."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowkit.errors import BatchInputError, ConfigError, FlowStructureError, GraphError
from flowkit.flow import AsyncFlow, AsyncParallelBatchFlow, BatchFlow, Flow, Parallel
from flowkit.graph import build_graph
from flowkit.node import AsyncNode, BaseNode, node_options
from flowkit.runner.context import current_node
from flowkit.runner.items import exec_items
from flowkit.runner.lanes import drive, items_of
from flowkit.runner.plan import DEFAULT_PARALLEL_CAP

if TYPE_CHECKING:
    from flowkit.runner.state import RunState


def validate(run: RunState, root: BaseNode, *, check_node_limits: bool) -> None:
    """Refuse bad configuration before any work starts: plan every node of ``root``'s graph
    (``flowkit.graph``, the walk the run will take) and check every flow's limit."""
    nodes = {id(g.node): g.node for g in build_graph(root).nodes}
    names = set()
    for node in nodes.values():
        names.add(node.name)
        if isinstance(node, Flow | Parallel):
            node_options(node, warn=False)  # checks the flow's own limit
        else:
            run.plan(node)
    if check_node_limits:
        unknown = sorted(set(run.runner.node_limits) - names)
        if unknown:
            raise ConfigError(
                f"Runner limits name unknown node(s) {', '.join(map(repr, unknown))}; "
                f"nodes in this flow: {', '.join(sorted(names))}. Use a flowkit.Limit "
                "value for a named limiter"
            )


async def run_node(run: RunState, node: BaseNode, shared: Any, parent: str) -> Any:
    """Run one node or flow (prep, exec, post); ``parent`` is the enclosing path."""
    path = f"{parent}/{node.name}" if parent else node.name
    if isinstance(node, Flow | Parallel):
        run.event("node_start", path, node.name, role="flow")
        ok = False
        try:
            if isinstance(node, Flow):
                result = await _run_flow(run, node, shared, path)
            else:
                result = await _run_parallel(run, node, shared, path)
            ok = True
            return result
        finally:
            run.event("node_end", path, node.name, ok=ok, role="flow")
    plan = run.plan(node)
    if run.emit is not None:
        run.event(
            "node_start",
            path,
            plan.name,
            role="node",
            executor=plan.executor,
            limit=plan.stats.limit,
            batch=plan.batch,
        )
    ok = False
    token = current_node.set((plan, path))
    try:
        if plan.is_async:
            assert isinstance(node, AsyncNode)
            prep_res = await _hook(node, "prep_async", shared)
            exec_res = await exec_items(run, plan, node, prep_res, path)
            result = await _hook(node, "post_async", shared, prep_res, exec_res)
        else:
            prep_res = _call_hook(node, "prep", shared)
            exec_res = await exec_items(run, plan, node, prep_res, path)
            result = _call_hook(node, "post", shared, prep_res, exec_res)
        ok = True
        return result
    finally:
        current_node.reset(token)
        run.event("node_end", path, plan.name, ok=ok, role="node")


async def _run_flow(run: RunState, flow: Flow, shared: Any, path: str) -> Any:
    is_async = isinstance(flow, AsyncFlow)
    if is_async:
        prep_res = await _hook(flow, "prep_async", shared)
    else:
        prep_res = _call_hook(flow, "prep", shared)
    if isinstance(flow, BatchFlow):
        prep_res = prep_res or []
        source = items_of(prep_res, flow, "params dicts")
        workers = 1
        if isinstance(flow, AsyncParallelBatchFlow):
            workers = node_options(flow, warn=False).max_concurrency or DEFAULT_PARALLEL_CAP

        async def one(_: int, params: Any) -> None:
            if not isinstance(params, Mapping):
                raise BatchInputError(
                    f"{flow.name}: prep must yield params dicts, got "
                    f"{type(params).__name__} {params!r:.80}"
                )
            await _orch(run, flow, shared, {**flow.params, **params}, path)

        await drive(source, workers, one)
        exec_res = None
    else:
        exec_res = await _orch(run, flow, shared, None, path)
    if is_async:
        return await _hook(flow, "post_async", shared, prep_res, exec_res)
    return _call_hook(flow, "post", shared, prep_res, exec_res)


async def _orch(
    run: RunState, flow: Flow, shared: Any, params: dict[str, Any] | None, path: str
) -> Any:
    curr: BaseNode | None = copy.copy(flow.first_node())
    p = params or {**flow.params}
    max_steps = flow.max_steps or run.runner.max_steps
    last_action = None
    steps = 0
    while curr is not None:
        steps += 1
        if not isinstance(curr, BaseNode):
            raise GraphError(
                f"{flow.name}: the flow reached {curr!r} ({type(curr).__name__}), which is "
                f"not a node or flow (after action {last_action!r}); wire a node there"
            )
        if max_steps is not None and steps > max_steps:
            raise FlowStructureError(
                f"{flow.name}: more than {max_steps} steps (the last action was "
                f"{last_action!r}); a cycle may never end. Raise max_steps if it is meant "
                "to run longer"
            )
        curr.set_params(p)
        last_action = await run_node(run, curr, shared, path)
        curr = copy.copy(flow.get_next_node(curr, last_action))
    return last_action


async def _run_parallel(run: RunState, par: Parallel, shared: Any, path: str) -> Any:
    if not isinstance(shared, dict):
        raise ConfigError(f"{par.name}: Parallel needs shared to be a dict")
    prep_res = await _hook(par, "prep_async", shared)
    base = shared
    views: dict[str, dict[str, Any]] = {}

    async def branch(i: int, node: BaseNode) -> None:
        view = dict(base)
        views[par.branch_names[i]] = view
        node = copy.copy(node)
        node.set_params({**par.params})
        await run_node(run, node, view, path)

    cap = node_options(par, warn=False).max_concurrency or len(par.branches)
    await drive(iter(par.branches), cap, branch)
    updates = {
        name: {k: v for k, v in view.items() if k not in base or base[k] is not v}
        for name, view in ((n, views[n]) for n in par.branch_names)
    }
    par.join(shared, updates)
    return await _hook(par, "post_async", shared, prep_res, None)


async def _hook(node: BaseNode, name: str, *args: Any) -> Any:
    try:
        return await getattr(node, name)(*args)
    except Exception as exc:
        _note(exc, node, name)
        raise


def _call_hook(node: BaseNode, name: str, *args: Any) -> Any:
    try:
        return getattr(node, name)(*args)
    except Exception as exc:
        _note(exc, node, name)
        raise


def _note(exc: BaseException, node: BaseNode, hook: str) -> None:
    if not any(n.startswith("flowkit:") for n in getattr(exc, "__notes__", ())):
        exc.add_note(f"flowkit: raised in {node.name}.{hook}")
