"""Code written for PocketFlow runs unchanged on flowkit.

Each test builds the same node code twice, from the ``pocketflow`` module and from ``flowkit``
(``build(m)`` returns a runnable node or flow and its shared store), runs both, and asserts the
same return value, the same final shared store and the same warnings. Observations made inside
hooks (``cur_retry``, call order) are written into shared so that they are compared too.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from typing import Any

import pocketflow
import pytest

import flowkit

MODULES = (pocketflow, flowkit)
Build = Callable[[Any], tuple[Any, dict]]
Outcome = tuple[Any, dict, list[str]]


def run_on(m: Any, build: Build) -> Outcome:
    """Build with module ``m`` and ``run`` it; warnings raised while building count too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node, shared = build(m)
        result = node.run(shared)
    return result, shared, [str(w.message) for w in caught]


async def run_async_on(m: Any, build: Build) -> Outcome:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node, shared = build(m)
        result = await node.run_async(shared)
    return result, shared, [str(w.message) for w in caught]


def same(build: Build) -> Outcome:
    """Run ``build`` on both modules, assert identical outcomes, return PocketFlow's."""
    expected = run_on(pocketflow, build)
    assert run_on(flowkit, build) == expected
    return expected


async def same_async(build: Build) -> Outcome:
    expected = await run_async_on(pocketflow, build)
    assert await run_async_on(flowkit, build) == expected
    return expected


def step(m: Any, name: str, action: str | None = None) -> Any:
    """A node that appends ``name`` to shared["path"] and returns ``action``."""

    class Step(m.Node):
        def post(self, shared, prep_res, exec_res):
            shared.setdefault("path", []).append(name)
            return action

    return Step()


# -- sync nodes ----------------------------------------------------------------------------------


def test_node_runs_prep_exec_post_and_returns_post_action() -> None:
    def build(m):
        class Double(m.Node):
            def prep(self, shared):
                return shared["x"]

            def exec(self, x):
                return x * 2

            def post(self, shared, prep_res, exec_res):
                shared["out"] = (prep_res, exec_res)
                return "doubled"

        return Double(), {"x": 21}

    assert same(build) == ("doubled", {"x": 21, "out": (21, 42)}, [])


def test_node_with_default_hooks_returns_none() -> None:
    assert same(lambda m: (m.Node(), {"k": 1})) == (None, {"k": 1}, [])


def test_retries_expose_cur_retry_until_exec_succeeds() -> None:
    def build(m):
        shared: dict = {"tries": []}

        class Flaky(m.Node):
            def exec(self, prep_res):
                shared["tries"].append(self.cur_retry)
                if self.cur_retry < 2:
                    raise ValueError(f"try {self.cur_retry}")
                return "ok"

            def post(self, shared, prep_res, exec_res):
                shared["result"] = exec_res

        return Flaky(max_retries=3, wait=0), shared

    assert same(build) == (None, {"tries": [0, 1, 2], "result": "ok"}, [])


def test_exec_fallback_runs_once_after_last_retry_with_last_error() -> None:
    def build(m):
        shared: dict = {"x": 7, "tries": []}

        class Failing(m.Node):
            def prep(self, shared):
                return shared["x"]

            def exec(self, x):
                shared["tries"].append(self.cur_retry)
                raise ValueError(f"bad {x} on try {self.cur_retry}")

            def exec_fallback(self, x, exc):
                return f"fallback at {self.cur_retry}: {exc}"

            def post(self, shared, prep_res, exec_res):
                shared["result"] = exec_res
                return "recovered"

        return Failing(max_retries=3, wait=0), shared

    assert same(build) == (
        "recovered",
        {"x": 7, "tries": [0, 1, 2], "result": "fallback at 2: bad 7 on try 2"},
        [],
    )


@pytest.mark.parametrize("m", MODULES, ids=lambda m: m.__name__)
def test_exec_error_propagates_when_fallback_is_not_overridden(m: Any) -> None:
    class Boom(m.Node):
        def exec(self, prep_res):
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        Boom(max_retries=2).run({})


def test_batch_node_calls_exec_per_item_and_posts_the_list() -> None:
    def build(m):
        class Squares(m.BatchNode):
            def prep(self, shared):
                return shared["xs"]

            def exec(self, x):
                return x * x

            def post(self, shared, prep_res, exec_res):
                shared["squares"] = exec_res
                return "done"

        return Squares(), {"xs": [1, 2, 3]}

    assert same(build) == ("done", {"xs": [1, 2, 3], "squares": [1, 4, 9]}, [])


def test_batch_node_retries_and_falls_back_per_item() -> None:
    def build(m):
        shared: dict = {"tries": []}

        class Picky(m.BatchNode):
            def prep(self, shared):
                return [0, 1, 2]

            def exec(self, i):
                shared["tries"].append((i, self.cur_retry))
                if i == 2 or self.cur_retry < i:
                    raise ValueError(f"item {i}")
                return f"ok {i}"

            def exec_fallback(self, i, exc):
                return f"fallback {exc}"

            def post(self, shared, prep_res, exec_res):
                shared["out"] = exec_res

        return Picky(max_retries=2, wait=0), shared

    _, shared, _ = same(build)
    assert shared["tries"] == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert shared["out"] == ["ok 0", "ok 1", "fallback item 2"]


def test_batch_node_whose_prep_returns_none_execs_nothing() -> None:
    def build(m):
        class Empty(m.BatchNode):
            def post(self, shared, prep_res, exec_res):
                shared["out"] = (prep_res, exec_res)

        return Empty(), {}

    assert same(build) == (None, {"out": (None, [])}, [])


# -- flows ---------------------------------------------------------------------------------------


def test_rshift_chain_runs_in_order_and_flow_returns_last_action() -> None:
    def build(m):
        a, b, c = step(m, "a"), step(m, "b"), step(m, "c", "finished")
        a >> b >> c
        return m.Flow(start=a), {}

    assert same(build) == ("finished", {"path": ["a", "b", "c"]}, [])


def test_flow_start_method_returns_the_node_for_chaining() -> None:
    def build(m):
        flow = m.Flow()
        flow.start(step(m, "a")) >> step(m, "b")
        return flow, {}

    assert same(build) == (None, {"path": ["a", "b"]}, [])


def test_conditional_transitions_branch_on_the_returned_action() -> None:
    def build(m):
        class Route(m.Node):
            def prep(self, shared):
                return shared["n"]

            def post(self, shared, prep_res, exec_res):
                return "even" if prep_res % 2 == 0 else "odd"

        route = Route()
        route - "even" >> step(m, "even")
        route - "odd" >> step(m, "odd")
        return m.Flow(start=route), {"n": 3}

    assert same(build) == (None, {"n": 3, "path": ["odd"]}, [])


def test_none_action_follows_the_default_successor() -> None:
    def build(m):
        a = step(m, "a")
        a >> step(m, "default")
        a - "other" >> step(m, "other")
        return m.Flow(start=a), {}

    assert same(build) == (None, {"path": ["a", "default"]}, [])


def test_bounded_loop_repeats_until_the_node_returns_another_action() -> None:
    def build(m):
        class Count(m.Node):
            def post(self, shared, prep_res, exec_res):
                shared["n"] += 1
                return "again" if shared["n"] < 3 else "stop"

        count = Count()
        count - "again" >> count
        count - "stop" >> step(m, "end", "bye")
        return m.Flow(start=count), {"n": 0}

    assert same(build) == ("bye", {"n": 3, "path": ["end"]}, [])


def test_flow_runs_a_fresh_copy_of_the_node_on_each_visit() -> None:
    def build(m):
        class Visit(m.Node):
            visits = 0

            def post(self, shared, prep_res, exec_res):
                self.visits += 1
                shared.setdefault("seen", []).append(self.visits)
                return "again" if len(shared["seen"]) < 3 else None

        visit = Visit()
        visit - "again" >> visit
        shared: dict = {}
        shared["original"] = visit
        return m.Flow(start=visit), shared

    for m in MODULES:
        _, shared, _ = run_on(m, build)
        assert (shared["seen"], shared["original"].visits) == ([1, 1, 1], 0)


def test_unknown_action_ends_the_flow_with_a_warning() -> None:
    def build(m):
        a = step(m, "a", "x")
        a >> step(m, "b")
        a - "y" >> step(m, "c")
        return m.Flow(start=a), {}

    assert same(build) == (
        "x",
        {"path": ["a"]},
        ["Flow ends: 'x' not found in ['default', 'y']"],
    )


def test_overwriting_a_successor_warns_and_replaces_it() -> None:
    def build(m):
        a = step(m, "a", "go")
        a - "go" >> step(m, "first")
        a - "go" >> step(m, "second")
        return m.Flow(start=a), {}

    assert same(build) == (
        None,
        {"path": ["a", "second"]},
        ["Overwriting successor for action 'go'"],
    )


def test_lone_node_with_successors_warns_and_runs_only_itself() -> None:
    def build(m):
        a = step(m, "a", "went")
        a >> step(m, "b")
        return a, {}

    assert same(build) == ("went", {"path": ["a"]}, ["Node won't run successors. Use Flow."])


@pytest.mark.parametrize("m", MODULES, ids=lambda m: m.__name__)
def test_non_string_action_raises_type_error(m: Any) -> None:
    with pytest.raises(TypeError):
        m.Node() - 5  # type: ignore[operator]


def test_nested_flow_returns_its_last_action_to_the_outer_flow() -> None:
    def build(m):
        inner_a = step(m, "inner a")
        inner_a >> step(m, "inner b", "escalate")
        inner = m.Flow(start=inner_a)
        outer_start = step(m, "outer start")
        outer_start >> inner
        inner - "escalate" >> step(m, "handler", "handled")
        inner >> step(m, "not taken")
        return m.Flow(start=outer_start), {}

    assert same(build) == (
        "handled",
        {"path": ["outer start", "inner a", "inner b", "handler"]},
        [],
    )


def test_flow_prep_and_post_overrides_see_the_last_action() -> None:
    def build(m):
        class Wrapped(m.Flow):
            def prep(self, shared):
                shared["prepped"] = True
                return "flow prep"

            def post(self, shared, prep_res, exec_res):
                shared["flow post"] = (prep_res, exec_res)
                return "wrapped"

        return Wrapped(start=step(m, "a", "inner action")), {}

    assert same(build) == (
        "wrapped",
        {"prepped": True, "path": ["a"], "flow post": ("flow prep", "inner action")},
        [],
    )


def test_lone_node_reads_params_given_by_set_params() -> None:
    def build(m):
        class Hello(m.Node):
            def prep(self, shared):
                return self.params["name"]

            def post(self, shared, prep_res, exec_res):
                shared["hello"] = prep_res

        node = Hello()
        node.set_params({"name": "ann"})
        return node, {}

    assert same(build) == (None, {"hello": "ann"}, [])


def record_params(m: Any, label: str) -> Any:
    """A node that appends (label, its params) to shared["params"]."""

    class RecordParams(m.Node):
        def prep(self, shared):
            return dict(self.params)

        def post(self, shared, prep_res, exec_res):
            shared.setdefault("params", []).append((label, prep_res))

    return RecordParams()


def test_flow_params_replace_node_params_down_nested_flows() -> None:
    def build(m):
        own = record_params(m, "own")
        own.set_params({"lost": True})
        inner = m.Flow(start=record_params(m, "inner"))
        own >> inner
        flow = m.Flow(start=own)
        flow.set_params({"user": "ann"})
        return flow, {}

    assert same(build) == (
        None,
        {"params": [("own", {"user": "ann"}), ("inner", {"user": "ann"})]},
        [],
    )


def test_batch_flow_runs_the_sub_flow_once_per_params_dict() -> None:
    def build(m):
        class PerWord(m.BatchFlow):
            def prep(self, shared):
                return [{"word": "hi"}, {"word": "salut", "lang": "fr"}]

        first = record_params(m, "first")
        first >> m.Flow(start=record_params(m, "nested"))
        batch = PerWord(start=first)
        batch.set_params({"lang": "en"})
        return batch, {}

    en, fr = {"lang": "en", "word": "hi"}, {"lang": "fr", "word": "salut"}
    assert same(build) == (
        None,
        {"params": [("first", en), ("nested", en), ("first", fr), ("nested", fr)]},
        [],
    )


def test_batch_flow_run_returns_none_and_post_gets_prep_result() -> None:
    def build(m):
        class Batch(m.BatchFlow):
            def prep(self, shared):
                return [{"i": 1}, {"i": 2}]

            def post(self, shared, prep_res, exec_res):
                shared["post"] = (prep_res, exec_res)

        return Batch(start=step(m, "a", "ignored")), {}

    assert same(build) == (
        None,
        {"path": ["a", "a"], "post": ([{"i": 1}, {"i": 2}], None)},
        [],
    )


def test_batch_flow_post_gets_empty_list_when_prep_returns_none() -> None:
    def build(m):
        class Nothing(m.BatchFlow):
            def post(self, shared, prep_res, exec_res):
                shared["post"] = (prep_res, exec_res)

        return Nothing(start=step(m, "a")), {}

    assert same(build) == (None, {"post": ([], None)}, [])


def test_batch_flow_inside_a_flow_continues_on_default() -> None:
    def build(m):
        class Twice(m.BatchFlow):
            def prep(self, shared):
                return [{}, {}]

        batch = Twice(start=step(m, "in batch", "dropped"))
        batch >> step(m, "after")
        return m.Flow(start=batch), {}

    assert same(build) == (None, {"path": ["in batch", "in batch", "after"]}, [])


@pytest.mark.parametrize("m", MODULES, ids=lambda m: m.__name__)
@pytest.mark.parametrize("kind", ["AsyncNode", "AsyncFlow"])
def test_sync_run_on_async_node_or_flow_raises_runtime_error(m: Any, kind: str) -> None:
    class Async(m.AsyncNode):
        async def exec_async(self, prep_res):
            return 1

    node = Async() if kind == "AsyncNode" else m.AsyncFlow(start=Async())
    with pytest.raises(RuntimeError):
        node.run({})


async def test_sync_flow_runs_when_called_inside_an_event_loop() -> None:
    def build(m):
        a = step(m, "a")
        a >> step(m, "b", "done")
        return m.Flow(start=a), {}

    assert same(build) == ("done", {"path": ["a", "b"]}, [])


def test_node_hook_may_run_another_flow_synchronously() -> None:
    def build(m):
        class Delegate(m.Node):
            def exec(self, prep_res):
                sub: dict = {}
                result = m.Flow(start=step(m, "sub", "sub done")).run(sub)
                return result, sub

            def post(self, shared, prep_res, exec_res):
                shared["delegated"] = exec_res

        return m.Flow(start=Delegate()), {}

    assert same(build) == (None, {"delegated": ("sub done", {"path": ["sub"]})}, [])


def test_flow_with_successors_warns_on_run() -> None:
    def build(m):
        flow = m.Flow(start=step(m, "a", "out"))
        flow >> m.Node()
        return flow, {}

    assert same(build) == ("out", {"path": ["a"]}, ["Node won't run successors. Use Flow."])


# -- async nodes and flows -----------------------------------------------------------------------


async def test_async_node_hooks_retries_and_fallback() -> None:
    def build(m):
        shared: dict = {"x": 5, "tries": 0}

        class Fetch(m.AsyncNode):
            async def prep_async(self, shared):
                return shared["x"]

            async def exec_async(self, x):
                shared["tries"] += 1
                raise ConnectionError(f"down for {x}")

            async def exec_fallback_async(self, x, exc):
                return f"cached {x} after {exc}"

            async def post_async(self, shared, prep_res, exec_res):
                shared["result"] = exec_res
                return "fell back"

        return Fetch(max_retries=3, wait=0), shared

    assert await same_async(build) == (
        "fell back",
        {"x": 5, "tries": 3, "result": "cached 5 after down for 5"},
        [],
    )


@pytest.mark.parametrize("m", MODULES, ids=lambda m: m.__name__)
async def test_async_exec_error_propagates_when_fallback_is_not_overridden(m: Any) -> None:
    class Boom(m.AsyncNode):
        async def exec_async(self, prep_res):
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await Boom(max_retries=2).run_async({})


async def test_lone_async_node_with_successors_warns() -> None:
    def build(m):
        class Lone(m.AsyncNode):
            async def exec_async(self, prep_res):
                return "ran"

            async def post_async(self, shared, prep_res, exec_res):
                shared["out"] = exec_res
                return "next"

        node = Lone()
        node >> m.Node()
        return node, {}

    assert await same_async(build) == (
        "next",
        {"out": "ran"},
        ["Node won't run successors. Use AsyncFlow."],
    )


def async_step(m: Any, name: str, action: str | None = None) -> Any:
    class AsyncStep(m.AsyncNode):
        async def exec_async(self, prep_res):
            await asyncio.sleep(0)
            return name

        async def post_async(self, shared, prep_res, exec_res):
            shared.setdefault("path", []).append(exec_res)
            return action

    return AsyncStep()


async def test_async_flow_mixes_sync_and_async_nodes_and_branches() -> None:
    def build(m):
        a = async_step(m, "async a", "sync")
        a - "sync" >> step(m, "sync b") >> async_step(m, "async c", "end")
        a >> step(m, "not taken")
        return m.AsyncFlow(start=a), {}

    assert await same_async(build) == ("end", {"path": ["async a", "sync b", "async c"]}, [])


async def test_async_flow_runs_nested_sync_and_async_flows() -> None:
    def build(m):
        sync_inner = m.Flow(start=step(m, "sync inner", "to async"))
        async_inner = m.AsyncFlow(start=async_step(m, "async inner", "out"))
        sync_inner - "to async" >> async_inner
        return m.AsyncFlow(start=sync_inner), {}

    assert await same_async(build) == ("out", {"path": ["sync inner", "async inner"]}, [])


async def test_async_flow_post_async_override_sees_the_last_action() -> None:
    def build(m):
        class Wrapped(m.AsyncFlow):
            async def prep_async(self, shared):
                return "flow prep"

            async def post_async(self, shared, prep_res, exec_res):
                shared["flow post"] = (prep_res, exec_res)
                return "wrapped"

        return Wrapped(start=async_step(m, "a", "inner action")), {}

    assert await same_async(build) == (
        "wrapped",
        {"path": ["a"], "flow post": ("flow prep", "inner action")},
        [],
    )


async def test_async_flow_with_successors_warns_on_run_async() -> None:
    def build(m):
        flow = m.AsyncFlow(start=async_step(m, "a", "out"))
        flow >> m.Node()
        return flow, {}

    assert await same_async(build) == (
        "out",
        {"path": ["a"]},
        ["Node won't run successors. Use AsyncFlow."],
    )


async def test_async_batch_node_runs_items_one_at_a_time_in_order() -> None:
    def build(m):
        shared: dict = {"log": []}

        class Each(m.AsyncBatchNode):
            async def prep_async(self, shared):
                return ["a", "b", "c"]

            async def exec_async(self, item):
                shared["log"].append(f"start {item}")
                await asyncio.sleep(0)
                shared["log"].append(f"end {item}")
                return item.upper()

            async def post_async(self, shared, prep_res, exec_res):
                shared["out"] = exec_res

        return Each(), shared

    _, shared, _ = await same_async(build)
    assert shared["log"] == ["start a", "end a", "start b", "end b", "start c", "end c"]
    assert shared["out"] == ["A", "B", "C"]


async def test_async_parallel_batch_node_keeps_input_order_when_items_finish_reversed() -> None:
    """Item i waits until item i + 1 has finished, so items finish last to first; that
    only terminates when all items are in flight at once (no sleeping, no timing luck)."""

    def build(m):
        n = 5
        shared: dict = {"finished": []}

        class Reversed(m.AsyncParallelBatchNode):
            async def prep_async(self, shared):
                self.done = [asyncio.Event() for _ in range(n)]
                return list(range(n))

            async def exec_async(self, i):
                if i + 1 < n:
                    await asyncio.wait_for(self.done[i + 1].wait(), 2)
                shared["finished"].append(i)
                self.done[i].set()
                return i * 10

            async def post_async(self, shared, prep_res, exec_res):
                shared["out"] = exec_res

        return Reversed(), shared

    assert await same_async(build) == (
        None,
        {"finished": [4, 3, 2, 1, 0], "out": [0, 10, 20, 30, 40]},
        [],
    )


async def test_async_batch_flow_runs_the_sub_flow_per_params_dict_in_order() -> None:
    def build(m):
        class Words(m.AsyncBatchFlow):
            async def prep_async(self, shared):
                return [{"word": "one"}, {"word": "two"}]

        class Say(m.AsyncNode):
            async def prep_async(self, shared):
                return self.params["word"]

            async def post_async(self, shared, prep_res, exec_res):
                await asyncio.sleep(0)
                shared.setdefault("said", []).append(prep_res)

        say = Say()
        say >> record_params(m, "sync")
        batch = Words(start=say)
        batch.set_params({"loud": True})
        return batch, {}

    assert await same_async(build) == (
        None,
        {
            "said": ["one", "two"],
            "params": [
                ("sync", {"loud": True, "word": "one"}),
                ("sync", {"loud": True, "word": "two"}),
            ],
        },
        [],
    )


async def test_async_parallel_batch_flow_branches_read_their_own_params() -> None:
    def build(m):
        class PerUser(m.AsyncParallelBatchFlow):
            async def prep_async(self, shared):
                return [{"user": u} for u in ("ann", "bob", "cy")]

            async def post_async(self, shared, prep_res, exec_res):
                shared["post"] = (len(prep_res), exec_res)

        class Load(m.AsyncNode):
            async def prep_async(self, shared):
                return self.params["user"]

            async def exec_async(self, user):
                await asyncio.sleep(0)
                return user.upper()

            async def post_async(self, shared, prep_res, exec_res):
                shared[f"load:{self.params['user']}"] = exec_res

        class Save(m.AsyncNode):
            async def prep_async(self, shared):
                await asyncio.sleep(0)
                return self.params["user"], dict(self.params)

            async def post_async(self, shared, prep_res, exec_res):
                user, params = prep_res
                shared[f"save:{user}"] = params

        load = Load()
        load >> Save()
        flow = PerUser(start=load)
        flow.set_params({"team": "t1"})
        return flow, {}

    result, shared, warned = await same_async(build)
    assert (result, warned) == (None, [])
    assert shared == {
        "load:ann": "ANN",
        "load:bob": "BOB",
        "load:cy": "CY",
        "save:ann": {"team": "t1", "user": "ann"},
        "save:bob": {"team": "t1", "user": "bob"},
        "save:cy": {"team": "t1", "user": "cy"},
        "post": (3, None),
    }


@pytest.mark.parametrize("kind", ["AsyncBatchFlow", "AsyncParallelBatchFlow"])
async def test_async_batch_flow_post_gets_empty_list_when_prep_returns_none(kind: str) -> None:
    def build(m):
        class Nothing(getattr(m, kind)):
            async def post_async(self, shared, prep_res, exec_res):
                shared["post"] = (prep_res, exec_res)

        return Nothing(start=async_step(m, "a")), {}

    assert await same_async(build) == (None, {"post": ([], None)}, [])


async def test_async_parallel_batch_flow_run_async_returns_none() -> None:
    def build(m):
        class Fan(m.AsyncParallelBatchFlow):
            async def prep_async(self, shared):
                return [{"k": 1}, {"k": 2}]

        return Fan(start=async_step(m, "leaf", "dropped")), {}

    assert await same_async(build) == (None, {"path": ["leaf", "leaf"]}, [])


# -- flowkit only: hazards PocketFlow has and flowkit removes -------------------------------------
# In PocketFlow, Node._exec stores the retry index on the node instance (self.cur_retry), which
# every item of an AsyncParallelBatchNode shares, and AsyncNode never sets it at all. flowkit
# keeps cur_retry per item, so these behaviours are specified for flowkit alone.


async def test_flowkit_parallel_items_each_see_their_own_cur_retry() -> None:
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}

    class Flaky(flowkit.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return [0, 1, 2]

        async def exec_async(self, i):
            before = self.cur_retry
            await asyncio.sleep(0)  # let the other items run and retry in between
            seen[i].append(self.cur_retry)
            assert self.cur_retry == before
            if self.cur_retry < 2:
                raise ValueError(i)
            return i

    await Flaky(max_retries=3, wait=0).run_async({})
    assert seen == {0: [0, 1, 2], 1: [0, 1, 2], 2: [0, 1, 2]}


async def test_flowkit_parallel_fallback_sees_the_last_retry_index_per_item() -> None:
    class AlwaysFails(flowkit.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return ["a", "b", "c"]

        async def exec_async(self, item):
            await asyncio.sleep(0)
            raise ValueError(f"{item} failed on try {self.cur_retry}")

        async def exec_fallback_async(self, item, exc):
            await asyncio.sleep(0)
            return f"{exc}; fallback at {self.cur_retry}"

        async def post_async(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared: dict = {}
    await AlwaysFails(max_retries=3, wait=0).run_async(shared)
    assert shared["out"] == [f"{c} failed on try 2; fallback at 2" for c in "abc"]


async def test_flowkit_async_node_exposes_cur_retry() -> None:
    tries: list[int] = []

    class Flaky(flowkit.AsyncNode):
        async def exec_async(self, prep_res):
            tries.append(self.cur_retry)
            if self.cur_retry < 1:
                raise ValueError("first try")
            return "ok"

    assert await Flaky(max_retries=2, wait=0).run_async({}) is None
    assert tries == [0, 1]


# -- what PocketFlow accepts, flowkit accepts (at most adding a FlowkitWarning) -------------------


def with_categories(run: Callable[[], Any]) -> tuple[Any, list[tuple[type, str]]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run()
    return result, [(w.category, str(w.message)) for w in caught]


def same_but_flowkit_may_warn(build: Build, *, is_async: bool = False) -> Outcome:
    """Same result and shared on both; flowkit's extra warnings are FlowkitWarnings that name
    the node. Returns PocketFlow's outcome."""

    def outcome(m: Any) -> tuple[Any, list[tuple[type, str]]]:
        def go() -> Any:
            node, shared = build(m)
            result = asyncio.run(node.run_async(shared)) if is_async else node.run(shared)
            return result, shared

        return with_categories(go)

    (expected, shared), theirs = outcome(pocketflow)
    (result, ours_shared), ours = outcome(flowkit)
    assert (result, ours_shared) == (expected, shared)
    extra = [w for w in ours if w not in theirs]
    assert all(category is flowkit.errors.FlowkitWarning for category, _ in extra), extra
    assert [w for w in theirs if w not in ours] == []
    return expected, shared, [message for _, message in extra]


def test_async_node_with_only_a_sync_exec_gets_none_from_exec_async() -> None:
    def build(m):
        class Legacy(m.AsyncNode):
            def exec(self, prep_res):
                return "never called"

            async def post_async(self, shared, prep_res, exec_res):
                shared["exec_res"] = exec_res
                return "posted"

        return Legacy(), {}

    result, shared, extra = same_but_flowkit_may_warn(build, is_async=True)
    assert (result, shared) == ("posted", {"exec_res": None})
    assert len(extra) == 1 and "Legacy is an async node, so its sync exec() is never" in extra[0]


def test_async_parallel_batch_node_with_only_a_sync_exec_gives_none_per_item() -> None:
    def build(m):
        class Legacy(m.AsyncParallelBatchNode):
            async def prep_async(self, shared):
                return [1, 2, 3]

            def exec(self, item):
                return item * 10

            async def post_async(self, shared, prep_res, exec_res):
                shared["out"] = exec_res

        return Legacy(), {}

    assert same_but_flowkit_may_warn(build, is_async=True)[:2] == (None, {"out": [None] * 3})


def test_next_takes_any_hashable_action() -> None:
    def build(m):
        class Pick(m.Node):
            def post(self, shared, prep_res, exec_res):
                return 7

        first = Pick()
        first.next(step(m, "seven"), 7)
        return m.Flow(start=first), {}

    assert same(build) == (None, {"path": ["seven"]}, [])


def test_a_none_successor_ends_the_flow_with_pocketflows_warning() -> None:
    def build(m):
        first = step(m, "a")
        first.next(None)
        return m.Flow(start=first), {}

    assert same(build) == (None, {"path": ["a"]}, ["Flow ends: 'None' not found in ['default']"])


def test_a_non_node_successor_on_a_branch_never_taken_is_harmless() -> None:
    def build(m):
        first = step(m, "a", "go")
        first - "go" >> step(m, "b")
        first - "never" >> "not a node"
        return m.Flow(start=first), {}

    result, shared, extra = same_but_flowkit_may_warn(build)
    assert (result, shared) == (None, {"path": ["a", "b"]})
    assert len(extra) == 1 and "successor for action 'never' is a str" in extra[0]


def test_a_flow_without_start_runs_nothing() -> None:
    def build(m):
        class Outer(m.Flow):
            def post(self, shared, prep_res, exec_res):
                shared["post"] = exec_res
                return "after"

        return Outer(), {}

    result, shared, extra = same_but_flowkit_may_warn(build)
    assert (result, shared) == ("after", {"post": None})
    assert len(extra) == 1 and "Outer has no start node, so it runs nothing" in extra[0]


@pytest.mark.parametrize("empty", [0, False, "", ()])
def test_batch_prep_returning_a_falsy_value_execs_nothing(empty: Any) -> None:
    def build(m):
        class Empty(m.BatchNode):
            def prep(self, shared):
                return empty

            def post(self, shared, prep_res, exec_res):
                shared["out"] = exec_res

        return Empty(), {}

    assert same(build) == (None, {"out": []}, [])


@pytest.mark.parametrize("kind", ["BatchFlow", "AsyncBatchFlow", "AsyncParallelBatchFlow"])
def test_batch_flow_prep_returning_zero_runs_no_sub_flow(kind: str) -> None:
    def build(m):
        class Zero(getattr(m, kind)):
            def prep(self, shared):
                return 0

            async def prep_async(self, shared):
                return 0

        return Zero(start=step(m, "never")), {}

    assert same_but_flowkit_may_warn(build, is_async=kind != "BatchFlow")[:2] == (None, {})


def test_max_retries_zero_never_calls_exec() -> None:
    def build(m):
        class Never(m.Node):
            def exec(self, prep_res):
                raise AssertionError("exec ran")

            def post(self, shared, prep_res, exec_res):
                shared["exec_res"] = exec_res

        return Never(max_retries=0), {}

    _, shared, extra = same_but_flowkit_may_warn(build)
    assert shared == {"exec_res": None}
    assert len(extra) == 1 and "max_retries=0 leaves no try" in extra[0]


def test_attributes_named_like_runner_options_stay_the_nodes_own() -> None:
    def build(m):
        class Own(m.Node):
            def __init__(self):
                super().__init__()
                self.executor = object()  # the node's own thread pool, say
                self.retry = 3
                self.uses = {"db": "sqlite"}
                self.on_error = print
                self.checkpoint = "model.pt"

            def exec(self, prep_res):
                return (self.retry, self.checkpoint, sorted(self.uses))

            def post(self, shared, prep_res, exec_res):
                shared["seen"] = exec_res

        return Own(), {}

    _, shared, extra = same_but_flowkit_may_warn(build)
    assert shared == {"seen": (3, "model.pt", ["db"])}
    assert {text.split("'")[1] for text in extra} == {
        "executor",
        "retry",
        "uses",
        "on_error",
        "checkpoint",
    }
