"""The engine of PocketFlow's ``node.run()``: a fresh ``Runner``, or the run in progress."""

from __future__ import annotations

import asyncio
from typing import Any

from flowkit.node import BaseNode
from flowkit.runner.run import Runner, run_node, running


class RunnerEngine:
    """What ``node.run()`` / ``run_async()`` use: a fresh Runner, or the run already in
    progress on this loop (a sub-flow run from a hook joins the run around it)."""

    def run(self, node: BaseNode, shared: Any) -> Any:
        return Runner().run(node, shared)

    async def run_async(self, node: BaseNode, shared: Any) -> Any:
        run = running.get()
        if run is not None and run.loop is asyncio.get_running_loop():
            run.plan(node, check_node_limits=False)
            return await run_node(run, node, shared, "")
        return await Runner().run_async(node, shared)
