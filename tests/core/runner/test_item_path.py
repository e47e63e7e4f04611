"""One item's happy path is short: the modules a one-node, one-item run touches, counted.

The count leaves out observers (progress, report, detector) and the store, which a plain run
does not use. Modules count when one of their functions runs (``sys.setprofile`` "call"
events), from ``Runner.run_async`` to ``exec`` and back.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import flowkit as fk

ROOT = Path(fk.__file__).parent


class Double(fk.AsyncNode):
    async def prep_async(self, shared):
        return shared["x"]

    async def exec_async(self, prep_res):
        return prep_res * 2

    async def post_async(self, shared, prep_res, exec_res):
        shared["y"] = exec_res


def modules_touched(flow: fk.BaseNode) -> set[str]:
    runner = fk.Runner(progress=False, detect_blocking=None)
    seen: set[str] = set()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            path = Path(frame.f_code.co_filename)
            if path.is_relative_to(ROOT):
                seen.add(".".join(path.relative_to(ROOT).with_suffix("").parts))

    async def main() -> None:
        await runner.run_async(flow, {"x": 1})  # imports done: only the run is traced
        shared = {"x": 21}
        sys.setprofile(profile)
        try:
            await runner.run_async(flow, shared)
        finally:
            sys.setprofile(None)
        assert shared["y"] == 42

    asyncio.run(main())
    return seen


def test_a_one_node_one_item_run_touches_at_most_four_runner_modules_and_eight_in_all() -> None:
    for flow in (Double(), fk.AsyncFlow(start=Double())):
        touched = modules_touched(flow)
        core = {m for m in touched if m.startswith(("runner.", "executors."))}
        assert len(core) <= 4, sorted(core)
        assert len(touched) <= 8, sorted(touched)
