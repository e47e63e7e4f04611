"""Bad input gets a flowkit error naming the node and the fix, before work starts."""

from __future__ import annotations

import pytest

import flowkit as fk
from flowkit.errors import (
    BatchInputError,
    ConfigError,
    FlowkitError,
    FlowStructureError,
    GraphError,
    NotImplementedExecError,
)


class Step(fk.Node):
    def exec(self, prep_res):
        return 1


def test_successor_must_be_a_node() -> None:
    with pytest.raises(GraphError, match="Step: successor for action 'default' must be a node"):
        Step() >> "next"  # type: ignore[operator]
    with pytest.raises(GraphError, match="successor for action 'retry'"):
        Step() - "retry" >> 42  # type: ignore[operator]


def test_action_must_be_a_string() -> None:
    with pytest.raises(GraphError, match="action must be a string, got int"):
        Step() - 3 >> Step()  # type: ignore[operator]
    with pytest.raises(TypeError):  # PocketFlow code catching TypeError still works
        Step().next(Step(), action=None)  # type: ignore[arg-type]


def test_unknown_executor() -> None:
    with pytest.raises(ConfigError, match="unknown executor 'gpu'; choose one of async, thread"):
        Step(executor="gpu")

    class Declared(Step):
        executor = "threads"

    with pytest.raises(ConfigError, match="Declared: unknown executor 'threads'"):
        fk.Runner().run(fk.Flow(start=Declared()), {})


def test_unknown_limiter_is_refused_before_work(tmp_path) -> None:
    ran = []

    class First(fk.Node):
        def prep(self, shared):
            ran.append("first")

    class UsesApi(Step):
        uses = ("api",)

    flow = fk.Flow(start=First())
    flow.start_node >> UsesApi()  # type: ignore[operator]
    with pytest.raises(ConfigError, match="UsesApi: uses limiter 'api', which the runner"):
        fk.Runner(limits={"other": fk.Limit(rpm=5)}).run(flow, {})
    assert ran == []


def test_runner_limit_for_an_unknown_node() -> None:
    with pytest.raises(ConfigError, match="unknown node\\(s\\) 'Stpe'; nodes in this flow: Step"):
        fk.Runner(limits={"Stpe": 2}).run(Step(), {})


def test_batch_prep_must_return_an_iterable() -> None:
    class Bad(fk.BatchNode):
        def prep(self, shared):
            return 42

    with pytest.raises(BatchInputError, match="Bad.prep returned int 42, but a batch needs"):
        fk.Runner().run(Bad(), {})

    class BadFlow(fk.AsyncParallelBatchFlow):
        async def prep_async(self, shared):
            return [1, 2]

    with pytest.raises(BatchInputError, match="BadFlow: prep must yield params dicts"):
        fk.Runner().run(BadFlow(start=Step()), {})


def test_flow_without_start() -> None:
    with pytest.raises(FlowStructureError, match=r"Flow has no start node: pass Flow\(start="):
        fk.Runner().run(fk.Flow(), {})
    with pytest.raises(GraphError, match="start must be a node"):
        fk.Flow(start="begin")  # type: ignore[arg-type]


def test_exec_the_executor_needs_is_missing() -> None:
    class OnlySync(fk.AsyncNode):
        def exec(self, prep_res):
            return 1

    with pytest.raises(NotImplementedExecError, match="rename it to `async def exec_async`"):
        fk.Runner().run(OnlySync(), {})

    class NoExec(fk.BatchNode):
        executor = "process"

    with pytest.raises(NotImplementedExecError, match="NoExec: executor='process' runs"):
        fk.Runner().run(NoExec(), {})


def test_max_steps_stops_a_cycle_that_never_ends() -> None:
    class Again(fk.Node):
        def post(self, shared, prep_res, exec_res):
            shared["n"] = shared.get("n", 0) + 1
            return "again"

    node = Again()
    node - "again" >> node
    shared: dict = {}
    with pytest.raises(FlowStructureError, match="more than 25 steps .*'again'"):
        fk.Runner().run(fk.Flow(start=node, max_steps=25), shared)
    assert shared["n"] == 25
    with pytest.raises(FlowStructureError, match="more than 5 steps"):
        fk.Runner(max_steps=5).run(fk.Flow(start=node), {})


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="on_error must be 'raise' or 'collect'"):
        Step(on_error="ignore")
    with pytest.raises(ConfigError, match="retry must be a flowkit.Retry"):
        Step(retry=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Retry.attempts must be an int >= 1"):
        fk.Retry(attempts=0)


def test_sync_run_of_an_async_flow_says_what_to_do() -> None:
    with pytest.raises(FlowkitError, match="use `await flow.run_async\\(shared\\)`"):
        fk.AsyncFlow(start=Step()).run({})


def test_errors_from_hooks_keep_their_type_and_name_the_hook() -> None:
    class BadPrep(fk.Node):
        def prep(self, shared):
            raise LookupError("no input")

    with pytest.raises(LookupError) as info:
        fk.Runner().run(fk.Flow(start=BadPrep()), {})
    assert info.value.__notes__ == ["flowkit: raised in BadPrep.prep"]
