"""Bad input gets a flowkit error naming the node and the fix, before work starts."""

from __future__ import annotations

import pytest

import flowkit as fk
from flowkit.errors import (
    BatchInputError,
    ConfigError,
    FlowkitError,
    FlowkitWarning,
    FlowStructureError,
    GraphError,
    NotImplementedExecError,
)


class Step(fk.Node):
    def exec(self, prep_res):
        return 1


def test_a_successor_that_is_not_a_node_warns_when_wired_and_fails_when_reached() -> None:
    # PocketFlow accepts the wiring (and fails only if the flow gets there): so does flowkit,
    # with a warning naming the node and the fix.
    with pytest.warns(FlowkitWarning, match="Step: the successor for action 'default' is a str"):
        first = Step()
        first >> "next"  # type: ignore[operator]
    with pytest.raises(GraphError, match="the flow reached 'next' \\(str\\), which is not a node"):
        fk.Runner().run(fk.Flow(start=first), {})
    with pytest.warns(FlowkitWarning, match="successor for action 'retry' is a int"):
        Step() - "retry" >> 42  # type: ignore[operator]


def test_action_operator_needs_a_string_but_next_takes_any_action() -> None:
    with pytest.raises(GraphError, match="action must be a string, got int"):
        Step() - 3 >> Step()  # type: ignore[operator]
    with pytest.raises(TypeError):  # PocketFlow code catching TypeError still works
        Step() - None >> Step()  # type: ignore[operator]
    node = Step()
    node.next(Step(), action=None)  # as in PocketFlow: stored, never followed
    assert None in node.successors


def test_unknown_executor() -> None:
    ran: list[str] = []

    class Gpu(Step):
        executor = "gpu"

        def exec(self, prep_res):
            ran.append("exec")

    # a name may be one a runner defines, so it is checked when the run plans, before work
    with pytest.raises(ConfigError, match="Gpu: unknown executor 'gpu'; choose one of async"):
        fk.Runner().run(fk.Flow(start=Gpu()), {})
    assert ran == []
    with pytest.raises(ConfigError, match="executor must be a name"):
        Step(executor="")

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


def test_a_flow_without_start_runs_nothing_and_says_so() -> None:
    # PocketFlow runs such a flow and does nothing; flowkit adds a warning naming the fix.
    with pytest.warns(FlowkitWarning, match=r"Flow has no start node, so it runs nothing: pass"):
        assert fk.Runner().run(fk.Flow(), {}) is None
    with pytest.warns(FlowkitWarning, match="its start is a str, not a node or flow"):
        flow = fk.Flow(start="begin")  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="the flow reached 'begin'"):
        fk.Runner().run(flow, {})


def test_an_async_node_with_only_a_sync_exec_runs_as_in_pocketflow() -> None:
    class OnlySync(fk.AsyncNode):
        def exec(self, prep_res):
            return 1

        async def post_async(self, shared, prep_res, exec_res):
            shared["exec_res"] = exec_res
            return "done"

    shared: dict = {}
    with pytest.warns(FlowkitWarning, match="OnlySync is an async node, so its sync exec"):
        assert fk.Runner().run(OnlySync(), shared) == "done"
    assert shared == {"exec_res": None}  # exec_async ran: PocketFlow's default returns None


def test_exec_the_executor_needs_is_missing() -> None:
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
