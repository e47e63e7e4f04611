"""The search's policies: merges, the budget in calls, dollars and time, stopping on request,
patience, re-scoring the finalists, and callbacks."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flows.prompt_opt import (
    CandidateAccepted,
    CandidateProposed,
    DummiesTask,
    Judge,
    OptEvent,
    PromptOptConfig,
    RoleSettings,
    RoundEnded,
    llm_limits,
    load_dummies,
    optimize_prompt,
    role_settings,
)
from flows.prompt_opt.merge import crossover, find_crossover, group_gate_rows, llm_merge_group
from nodes.llm import LLMSettings, Simulation

pytestmark = pytest.mark.filterwarnings("ignore:validation equals training")
DUMMIES = load_dummies()
Rows = Callable[[Path], list[dict[str, Any]]]


def quiet(limit: int = 3) -> fk.Runner:
    return fk.Runner(limits=llm_limits(limit), progress=False)


# -- merges -------------------------------------------------------------------------------


def test_crossover_takes_each_component_from_the_side_that_changed_it() -> None:
    a = {"x": "x0", "y": "y0", "z": "z0"}
    i = {"x": "x1", "y": "y0", "z": "z1"}  # changed x and z
    j = {"x": "x0", "y": "y2", "z": "z2"}  # changed y and z
    scores = {"a": 0.2, "i": 0.6, "j": 0.5}
    child = crossover(a, i, j, "i", "j", scores, random.Random(0))
    assert child == {"x": "x1", "y": "y2", "z": "z1"}  # z: both changed, the better (i)


def test_crossover_needs_a_common_ancestor_and_never_fires_on_one_component() -> None:
    parents = {"c1": set(), "c2": {"c1"}, "c3": {"c1"}}
    scores = {"c1": 0.1, "c2": 0.5, "c3": 0.6}
    one = {"c1": {"p": "a"}, "c2": {"p": "b"}, "c3": {"p": "c"}}
    rng = random.Random(0)
    assert find_crossover(["c2", "c3"], one, parents.__getitem__, scores, set(), rng) is None
    two = {
        "c1": {"p": "a", "q": "a"},
        "c2": {"p": "b", "q": "a"},
        "c3": {"p": "a", "q": "c"},
    }
    found = find_crossover(["c2", "c3"], two, parents.__getitem__, scores, set(), rng)
    assert found == (("c2", "c3", "c1"), {"p": "b", "q": "c"})
    tried = {("c2", "c3", "c1")}
    assert find_crossover(["c2", "c3"], two, parents.__getitem__, scores, tried, rng) is None


def test_an_llm_merge_skips_members_that_descend_from_one_another() -> None:
    table = {
        "c2": {"a": 1.0, "b": 0.0, "c": 0.0},
        "c3": {"a": 0.0, "b": 1.0, "c": 0.0},
        "c4": {"a": 0.0, "b": 0.0, "c": 1.0},
    }
    ancestors = {"c2": {"c1"}, "c3": {"c1"}, "c4": {"c1", "c2"}}.__getitem__
    for seed in range(20):
        group = llm_merge_group(list(table), table, ancestors, set(), random.Random(seed), 3)
        assert group is not None and not {"c2", "c4"} <= set(group)
    rows = group_gate_rows([table["c2"], table["c3"]], random.Random(0))
    assert sorted(rows) == ["a", "b"]  # where they differ, one where each is best


def test_a_wide_round_is_merged_after_it_found_something(
    offline: RoleSettings, tmp_path: Path, read_jsonl: Rows
) -> None:
    result = optimize_prompt(train=DUMMIES, settings=offline, output=tmp_path, runner=quiet(16))
    cands = {c.id: c for c in result.candidates}
    merges = [c for c in result.candidates if c.kind == "llm-merge"]
    assert merges and result.best_id == merges[0].id and result.best_score == 1.0
    for merge in merges:
        assert len(merge.parents) >= 2
        found = [p.id for p in cands.values() if p.round == merge.round - 1 and p.accepted]
        assert found  # the round before accepted a child
        for p in merge.parents:
            others = set(merge.parents) - {p}
            assert not others & _ancestors(cands, p)
        gate = {
            r["row"]
            for r in read_jsonl(tmp_path / "evaluations.jsonl")
            if r["candidate"] == merge.id and r["purpose"] == "gate"
        }
        for row in gate:  # gated where the parents disagree
            assert len({cands[p].val_scores[row] for p in merge.parents}) > 1
    assert all(c.round != merges[0].round or c.kind == "llm-merge" for c in cands.values())


def _ancestors(cands: dict[str, Any], cid: str) -> set[str]:
    out: set[str] = set()
    todo = list(cands[cid].parents)
    while todo:
        p = todo.pop()
        out.add(p)
        todo.extend(cands[p].parents)
    return out


def test_two_components_are_rewritten_in_turn_and_crossed_over(offline: RoleSettings) -> None:
    seeds = [{"greeting": "Greet the caller by name.\n", "system_prompt": "You are a desk.\n"}]
    config = PromptOptConfig(merge="crossover", budget=1500, patience=6)
    result = optimize_prompt(
        train=DUMMIES, seeds=seeds, settings=offline, config=config, runner=quiet(16)
    )
    cands = {c.id: c for c in result.candidates}
    for child in (c for c in cands.values() if c.kind == "reflect"):
        parent = cands[child.parents[0]].components
        changed = [n for n in parent if parent[n] != child.components[n]]
        assert changed == [child.component]  # one component per rewrite
    rewritten = {c.component for c in cands.values() if c.kind == "reflect"}
    assert rewritten == {"greeting", "system_prompt"}
    crossed = [c for c in cands.values() if c.kind == "crossover"]
    assert crossed and all(len(c.parents) == 2 for c in crossed)


# -- budget and stopping ------------------------------------------------------------------


def test_the_budget_counts_every_request_billed_retries_included() -> None:
    flaky = LLMSettings(
        provider="simulated",
        backoff_s=0,
        simulation=Simulation(latency_s=0, rate_limit_rate=0.2, retry_after_s=0),
    )
    config = PromptOptConfig(budget=500, feedback=False, patience=50)
    result = optimize_prompt(
        train=DUMMIES[:4], settings=role_settings(flaky), config=config, runner=quiet()
    )
    retried = sum(r.retries for r in result.usage)
    assert retried > 0
    assert result.billed == sum(r.attempts for r in result.usage)
    assert result.billed == sum(result.calls.values()) + retried
    assert "budget spent" in result.stop_reason
    assert result.billed <= 500 + retried


def test_a_cost_cap_stops_the_search_within_it(offline: RoleSettings) -> None:
    prices = {role: (1.0, 2.0) for role in ("assistant", "user", "judge", "reflect")}
    config = PromptOptConfig(budget=None, max_cost=0.3, feedback=False, patience=50)
    result = optimize_prompt(
        train=DUMMIES, settings=offline, config=config, prices=prices, runner=quiet()
    )
    assert result.stop_reason.startswith("cost cap")
    assert 0 < result.cost <= 0.3
    assert result.cost == pytest.approx(sum(r.cost or 0 for r in result.usage))


def test_a_wall_time_cap_starts_no_round_that_would_run_past_it() -> None:
    slow = role_settings(LLMSettings(provider="simulated", simulation=Simulation(latency_s=0.01)))
    config = PromptOptConfig(budget=None, max_time=0.6, feedback=False, patience=50)
    result = optimize_prompt(train=DUMMIES[:3], settings=slow, config=config, runner=quiet())
    assert result.stop_reason.startswith("wall-time cap")
    assert result.progress[-1].elapsed < 0.6 + 0.3


def _stop_at_round(n: int, act: Callable[[], None]) -> Callable[[OptEvent], None]:
    def callback(event: OptEvent) -> None:
        if isinstance(event, RoundEnded) and event.round == n:
            act()

    return callback


def test_a_stop_file_ends_the_search_after_its_round(offline: RoleSettings, tmp_path: Path) -> None:
    stop = _stop_at_round(2, lambda: (tmp_path / "STOP").touch())
    config = PromptOptConfig(feedback=False, patience=50)
    result = optimize_prompt(
        DUMMIES, settings=offline, config=config, output=tmp_path, callbacks=[stop], runner=quiet()
    )
    assert result.rounds == 2
    assert result.stop_reason == f"stop file {tmp_path / 'STOP'} found"
    again = optimize_prompt(DUMMIES, settings=offline, output=tmp_path, runner=quiet())
    assert "stop file" not in again.stop_reason  # a stale stop file is cleared at start


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_sigusr1_ends_the_search_after_its_round(offline: RoleSettings) -> None:
    stop = _stop_at_round(3, lambda: os.kill(os.getpid(), signal.SIGUSR1))
    config = PromptOptConfig(feedback=False, patience=50)
    result = optimize_prompt(
        DUMMIES, settings=offline, config=config, callbacks=[stop], runner=quiet()
    )
    assert result.rounds == 3
    assert result.stop_reason == "signal SIGUSR1 received"
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handler is gone again


def test_patience_counts_rounds_without_a_better_best(offline: RoleSettings) -> None:
    events: list[OptEvent] = []
    config = PromptOptConfig(feedback=False, patience=2)
    result = optimize_prompt(
        train=DUMMIES, settings=offline, config=config, callbacks=[events.append], runner=quiet()
    )
    assert result.stop_reason == "no better best for 2 rounds"
    assert [e.round for e in events if isinstance(e, RoundEnded)] == [1, 2, 3]


# -- re-scoring ---------------------------------------------------------------------------


def test_a_noisy_judge_gets_the_finalists_scored_again_before_the_best_is_named(
    offline: RoleSettings, read_jsonl: Rows, tmp_path: Path, coin_judge: type[Judge]
) -> None:
    task = DummiesTask(offline, judge=coin_judge)
    result = optimize_prompt(
        train=DUMMIES, task=task, settings=offline, output=tmp_path, runner=quiet()
    )
    assert 1 < len(result.rescored) <= 3
    runs = read_jsonl(tmp_path / "evaluations.jsonl")
    for cid in result.rescored:
        again = [r for r in runs if r["candidate"] == cid and r["purpose"] == "rescore"]
        assert {r["row"] for r in again} == {d.id for d in DUMMIES}
    assert result.best_id in result.rescored
    best = next(c for c in result.candidates if c.id == result.best_id)
    assert best.val_runs == 2 * len(DUMMIES)


def test_a_judge_that_repeats_itself_gets_no_re_score_unless_asked(offline: RoleSettings) -> None:
    plain = optimize_prompt(train=DUMMIES, settings=offline, runner=quiet())
    assert plain.rescored == []
    asked = optimize_prompt(
        train=DUMMIES, settings=offline, config=PromptOptConfig(rescore="always"), runner=quiet()
    )
    assert len(asked.rescored) == 3


# -- callbacks ----------------------------------------------------------------------------


class Tracker:
    def __init__(self) -> None:
        self.proposed: list[str] = []
        self.accepted: list[str] = []

    def on_candidate_proposed(self, event: CandidateProposed) -> None:
        self.proposed.append(event.candidate)

    def on_candidate_accepted(self, event: CandidateAccepted) -> None:
        self.accepted.append(event.candidate)


def test_callbacks_hear_each_event_and_one_that_raises_is_dropped(
    offline: RoleSettings, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = Tracker()
    everything: list[OptEvent] = []

    def broken(event: OptEvent) -> None:
        raise RuntimeError("boom")

    result = optimize_prompt(
        train=DUMMIES,
        settings=offline,
        callbacks=[broken, tracker, everything.append],
        runner=quiet(),
    )
    children = [c.id for c in result.candidates if c.kind != "seed"]
    assert tracker.proposed == children
    assert tracker.accepted == [c.id for c in result.candidates if c.kind != "seed" and c.accepted]
    kinds = [e.kind for e in everything]
    assert kinds.count("round_ended") == result.rounds and kinds[-1] == "optimisation_ended"
    assert [e.calls for e in everything] == sorted(e.calls for e in everything)
    dropped = [r.message for r in caplog.records if "<locals>.broken raised" in r.message]
    assert len(dropped) == 1 and "RuntimeError: boom" in dropped[0]
