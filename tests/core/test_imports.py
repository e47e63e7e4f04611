"""``import flowkit`` is cheap: names load on first use, and every documented name resolves."""

from __future__ import annotations

import subprocess
import sys

import flowkit


def modules_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_import_flowkit_loads_no_runner_pydantic_or_tenacity() -> None:
    loaded = modules_after("import flowkit")
    assert not loaded & {"flowkit.runner", "pydantic", "tenacity", "rich", "asyncio"}


def test_defining_nodes_and_flows_does_not_load_the_runner_or_its_dependencies() -> None:
    loaded = modules_after(
        "import flowkit as fk\n"
        "class N(fk.AsyncParallelBatchNode):\n    pass\n"
        "fk.AsyncFlow(start=N()) >> fk.Flow()"
    )
    assert "flowkit.node" in loaded and "flowkit.flow" in loaded
    assert not loaded & {"flowkit.runner", "flowkit.store", "pydantic", "tenacity", "rich"}


def test_every_public_name_resolves_and_submodules_stay_reachable() -> None:
    for name in flowkit.__all__:
        assert getattr(flowkit, name) is not None
    assert set(flowkit.__all__) <= set(dir(flowkit))
    assert flowkit.errors.FlowkitError is flowkit.FlowkitError
    try:
        flowkit.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "no attribute 'NoSuchThing'" in str(exc)
    else:
        raise AssertionError("a missing name must raise AttributeError")
