"""Graph export: Mermaid that round-trips a flow's nodes, nesting and actions; wiring problems."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import flowkit as fk
from flowkit.graph import build_graph, problems, to_mermaid


class Step(fk.Node):
    pass


class Fetch(fk.AsyncParallelBatchNode):
    max_concurrency = 3


class Crunch(fk.BatchNode):
    executor = "process"

    def exec(self, item):
        return item


@dataclass
class Parsed:
    """What a Mermaid flowchart says: labels by id, parents by id, and labelled edges."""

    labels: dict[str, str] = field(default_factory=dict)
    parents: dict[str, str | None] = field(default_factory=dict)
    edges: set[tuple[str, str, str]] = field(default_factory=set)
    boxes: set[str] = field(default_factory=set)  # nodes drawn as subroutines (parallel)
    comments: list[str] = field(default_factory=list)

    def name(self, node_id: str) -> str:
        return self.labels[node_id].split("<br/>")[0]

    def named_edges(self) -> set[tuple[str, str, str]]:
        return {(self.name(a), action, self.name(b)) for a, action, b in self.edges}


_ENTITIES = {"#35;": "#", "#quot;": '"', "#lt;": "<", "#gt;": ">", "#124;": "|"}


def unescape(text: str) -> str:
    return re.sub(r"#(?:35|quot|lt|gt|124);", lambda m: _ENTITIES[m.group(0)], text)


def parse(text: str) -> Parsed:
    out = Parsed()
    stack: list[str] = []
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    for line in (raw.strip() for raw in lines[1:]):
        if m := re.fullmatch(r'subgraph (\w+) \["(.*)"\]', line):
            out.labels[m[1]] = unescape(m[2])
            out.parents[m[1]] = stack[-1] if stack else None
            stack.append(m[1])
        elif line == "end":
            stack.pop()
        elif m := re.fullmatch(r'(\w+)(\[\[|\[)"(.*)"(\]\]|\])', line):
            out.labels[m[1]] = unescape(m[3])
            out.parents[m[1]] = stack[-1] if stack else None
            if m[2] == "[[":
                out.boxes.add(m[1])
        elif m := re.fullmatch(r'(\w+) -->(?:\|"(.*)"\|)? (\w+)', line):
            out.edges.add((m[1], unescape(m[2]) if m[2] is not None else "default", m[3]))
        elif line.startswith("%%"):
            out.comments.append(line[2:].strip())
        else:
            assert line.startswith(("classDef ", "class ", "direction ")), line
    return out


def example() -> fk.AsyncFlow:
    load, fetch, crunch, done = Step(name="load"), Fetch(), Crunch(), Step(name='say "hi" #1')
    inner = fk.AsyncParallelBatchFlow(start=Step(name="translate"), name="per-lang")
    inner.start_node >> Step(name="check")  # type: ignore[operator]
    fan = fk.Parallel(Step(name="a"), fk.Flow(start=Step(name="b"), name="b-flow"), name="fan")
    load >> fetch
    fetch - "retry" >> load
    fetch - "ok" >> crunch
    crunch >> inner >> fan >> done
    return fk.AsyncFlow(start=load, name="main")


def test_mermaid_round_trips_nodes_nesting_and_actions() -> None:
    flow = example()
    parsed = parse(to_mermaid(flow))
    graph = build_graph(flow)
    expected_parents = {
        g.id: g.parent if g.parent != graph.nodes[0].id else None for g in graph.nodes[1:]
    }
    assert parsed.parents == expected_parents
    assert {parsed.name(i) for i in parsed.labels} == {g.node.name for g in graph.nodes[1:]}
    assert parsed.named_edges() == {
        ("load", "default", "Fetch"),
        ("Fetch", "retry", "load"),
        ("Fetch", "ok", "Crunch"),
        ("Crunch", "default", "per-lang"),
        ("per-lang", "default", "fan"),
        ("fan", "default", 'say "hi" #1'),
        ("translate", "default", "check"),
    }
    by_name = {parsed.name(i): i for i in parsed.labels}
    assert parsed.parents[by_name["check"]] == by_name["per-lang"]
    assert parsed.parents[by_name["b"]] == by_name["b-flow"]
    assert parsed.parents[by_name["b-flow"]] == by_name["fan"]


def test_every_successor_of_the_graph_becomes_an_edge() -> None:
    flow = example()
    parsed = parse(to_mermaid(flow))
    wired = set()
    for g in build_graph(flow).nodes:
        for action, nxt in g.node.successors.items():
            wired.add((g.node.name, action, nxt.name))
    assert parsed.named_edges() == wired


def test_parallel_constructs_show_their_executor_and_limit() -> None:
    parsed = parse(to_mermaid(example()))
    by_name = {parsed.name(i): i for i in parsed.labels}
    assert by_name["Fetch"] in parsed.boxes and by_name["Crunch"] in parsed.boxes
    assert by_name["load"] not in parsed.boxes
    assert "parallel · limit=3" in parsed.labels[by_name["Fetch"]]
    assert "executor=process" in parsed.labels[by_name["Crunch"]]
    assert "AsyncParallelBatchFlow · parallel" in parsed.labels[by_name["per-lang"]]
    assert "Parallel · 2 branches" in parsed.labels[by_name["fan"]]


def test_a_single_node_is_a_one_box_chart() -> None:
    parsed = parse(to_mermaid(Fetch()))
    assert [parsed.name(i) for i in parsed.labels] == ["Fetch"]
    assert parsed.edges == set()


def test_successors_of_a_parallel_branch_are_reported_as_never_running() -> None:
    branch = Step(name="branch")
    branch >> Step(name="lost")
    flow = fk.AsyncFlow(start=fk.Parallel(branch, Step(name="other"), name="fan"), name="main")
    [problem] = problems(flow)
    assert problem.kind == "unreachable"
    assert problem.node == "main/fan/branch"
    assert "lost" in problem.message and "never runs" in problem.message
    assert any("never runs" in c for c in parse(to_mermaid(flow)).comments)


def test_a_flow_without_start_and_a_shared_instance_are_problems() -> None:
    shared = Step(name="shared")
    one = fk.Flow(start=shared, name="one")
    two = fk.Flow(start=shared, name="two")
    empty = fk.Flow(name="empty")
    one >> two >> empty
    found = {(p.kind, p.node) for p in problems(fk.Flow(start=one, name="main"))}
    assert found == {("shared", "main/one/shared"), ("no_start", "main/empty")}


def test_a_clean_flow_has_no_problems() -> None:
    assert problems(example()) == []


def test_a_flow_wired_into_itself_is_a_problem_naming_the_chain() -> None:
    outer = fk.Flow(name="outer")
    inner = fk.Flow(start=Step(name="s"), name="inner")
    outer.start(inner)
    inner.start_node >> outer  # type: ignore[operator]
    [problem] = [p for p in problems(outer) if p.kind == "nested"]
    assert problem.node == "outer"
    assert "flow outer is wired into itself (outer -> inner -> outer)" in problem.message


def test_a_loop_with_no_way_out_is_flagged_and_one_with_an_exit_or_a_bound_is_not() -> None:
    think, act = Step(name="think"), Step(name="act")
    think - "act" >> act
    act - "think" >> think
    [problem] = problems(fk.Flow(start=think, name="agent"))
    assert problem.kind == "endless" and problem.node == "agent/think"
    assert "the loop think -> act -> think has no way out" in problem.message

    act - "done" >> Step(name="answer")  # a wired exit: PocketFlow's agent pattern
    assert problems(fk.Flow(start=think, name="agent")) == []

    again = Step(name="again")
    again - "again" >> again
    assert [p.kind for p in problems(fk.Flow(start=again, name="spin"))] == ["endless"]
    assert problems(fk.Flow(start=again, name="spin", max_steps=50)) == []
