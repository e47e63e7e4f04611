"""The offline optimisation on the bundled clinic dummies (simulated provider, no latency):
splits, fresh gates, validation records, failures, proposals per round, outputs."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flows.prompt_opt import (
    DummiesTask,
    Judge,
    PromptOptConfig,
    PromptOptInputError,
    PromptOptWarning,
    Reflect,
    TooManyFailuresError,
    UserTurn,
    llm_limits,
    load_dummies,
    optimize_prompt,
    role_settings,
)
from flows.prompt_opt.conversation import RoleSettings, Turn
from flows.prompt_opt.nodes import Rewrite
from nodes.llm import LLMSettings, Simulation

pytestmark = pytest.mark.filterwarnings("ignore:validation equals training")
DUMMIES = load_dummies()
Failing = Callable[[Sequence[str]], type[Judge]]
IDS = [d.id for d in DUMMIES]


def quiet(**options: object) -> fk.Runner:
    return fk.Runner(limits=llm_limits(**options), progress=False)  # type: ignore[arg-type]


Rows = Callable[[Path], list[dict[str, Any]]]


def test_the_best_rises_from_the_seed_to_every_need_and_the_files_say_so(
    offline: RoleSettings, tmp_path: Path, read_jsonl: Rows
) -> None:
    jsonl = read_jsonl
    with pytest.warns(PromptOptWarning, match="validation equals training"):
        result = optimize_prompt(train=DUMMIES, settings=offline, output=tmp_path)
    assert result.seed_score < 0.2
    assert result.best_score == 1.0
    assert "meets every need" in result.stop_reason
    bests = [p.best for p in result.progress]
    assert bests == sorted(bests)
    assert (tmp_path / "best_prompt.txt").read_text() == result.best_prompt
    assert jsonl(tmp_path / "candidates.jsonl")[0]["id"] == "c1"
    runs = jsonl(tmp_path / "evaluations.jsonl")
    assert len(list((tmp_path / "transcripts").iterdir())) == len(runs)
    assert (tmp_path / "progress.png").stat().st_size > 0
    summary = (tmp_path / "summary.md").read_text()
    assert "validation equals training" in summary
    assert "Failed evaluations (scored 0): none" in summary
    kinds = [e["kind"] for e in jsonl(tmp_path / "events.jsonl")]
    assert kinds[-1] == "optimisation_ended" and "round_ended" in kinds
    assert (tmp_path / "report" / "report.json").exists()


def test_one_set_is_split_with_the_seed_and_each_part_does_its_job(
    offline: RoleSettings, tmp_path: Path, read_jsonl: Rows
) -> None:
    jsonl = read_jsonl
    result = optimize_prompt(settings=offline, output=tmp_path, runner=quiet())
    train, val = set(result.splits.train), set(result.splits.val)
    assert len(train) == len(val) == 4 and train | val == set(IDS) and not train & val
    assert result.splits.how == "8 dummies split with seed 0: 4 training, 4 validation"
    assert result.splits.how in (tmp_path / "summary.md").read_text()
    other = optimize_prompt(settings=offline, config=PromptOptConfig(seed=1), runner=quiet())
    assert set(other.splits.val) != val
    for run in jsonl(tmp_path / "evaluations.jsonl"):
        assert run["row"] in (train if run["purpose"] == "gate" else val), run
    for cand in result.candidates:
        assert set(cand.val_scores) <= val


class Recorded(Reflect):
    requests: list[str] = []

    async def exec_async(self, item: Rewrite):  # type: ignore[no-untyped-def]
        Recorded.requests.append(item.request)
        return await super().exec_async(item)


def test_the_reflector_sees_training_rows_only(offline: RoleSettings) -> None:
    from flows.prompt_opt import prompt_opt_flow

    Recorded.requests = []
    task = DummiesTask(offline)
    train, val = DUMMIES[:4], DUMMIES[4:]
    optimize_prompt(
        train=train,
        val=val,
        task=task,
        settings=offline,
        runner=quiet(),
        flow=prompt_opt_flow(offline, task=task, reflect=Recorded),
    )
    assert Recorded.requests
    for request in Recorded.requests:
        assert any(d.opening in request for d in train)
        assert not any(d.opening in request for d in val)


def test_test_rows_are_scored_once_at_the_end_and_reported_apart(
    offline: RoleSettings, tmp_path: Path, read_jsonl: Rows
) -> None:
    jsonl = read_jsonl
    train, val, test = DUMMIES[:3], DUMMIES[3:6], DUMMIES[6:]
    events: list[object] = []
    result = optimize_prompt(
        train=train,
        val=val,
        test=test,
        settings=offline,
        output=tmp_path,
        runner=quiet(),
        callbacks=[events.append],
    )
    runs = jsonl(tmp_path / "evaluations.jsonl")
    tested = [r for r in runs if r["purpose"] == "test"]
    assert {r["row"] for r in tested} == {d.id for d in test}
    assert Counter(r["candidate"] for r in tested) == {result.best_id: 2, "c1": 2}
    assert all(r["round"] == "end" for r in tested)
    assert not [r for r in runs if r["purpose"] != "test" and r["row"] in {d.id for d in test}]
    assert result.test_score is not None and result.seed_test_score is not None
    assert set(result.best_scores) == {d.id for d in val}
    assert (
        f"best {result.test_score:.3f}, seed {result.seed_test_score:.3f}"
        in (tmp_path / "summary.md").read_text()
    )
    assert type(events[-1]).__name__ == "OptimisationEnded"


def test_a_child_meets_its_parent_run_fresh_on_the_same_rows_and_is_then_scored_fresh(
    offline: RoleSettings, tmp_path: Path, read_jsonl: Rows, coin_judge: type[Judge]
) -> None:
    jsonl = read_jsonl
    task = DummiesTask(offline, judge=coin_judge)
    optimize_prompt(
        train=DUMMIES,
        task=task,
        settings=offline,
        output=tmp_path,
        split=None,
        runner=quiet(),
        config=PromptOptConfig(budget=900, rescore="never"),
    )
    runs = jsonl(tmp_path / "evaluations.jsonl")
    cands = {c["id"]: c for c in jsonl(tmp_path / "candidates.jsonl")}
    children = [c for c in cands.values() if c["kind"] == "reflect"]
    assert children and any(c["accepted"] for c in children)
    for child in children:
        tag = f"r{child['round']}"
        mine = [
            r
            for r in runs
            if r["candidate"] == child["id"] and r["purpose"] == "gate" and r["round"] == tag
        ]
        rows = {r["row"] for r in mine}
        (parent,) = child["parents"]
        theirs = [
            r
            for r in runs
            if r["candidate"] == parent and r["purpose"] == "gate" and r["round"] == tag
        ]
        assert {r["row"] for r in theirs} == rows  # the parent ran again, on the same rows
        assert child["gate_before"] == pytest.approx(sum(r["value"] for r in theirs))
        assert child["gate_after"] == pytest.approx(sum(r["value"] for r in mine))
        if child["accepted"]:
            val = [r for r in runs if r["candidate"] == child["id"] and r["purpose"] == "val"]
            assert {r["row"] for r in val} == set(IDS)
            for row, score in child["val_scores"].items():
                assert score == pytest.approx(
                    sum(r["value"] for r in val if r["row"] == row)
                )  # its gate runs never enter its validation record


def test_failed_evaluations_score_zero_and_are_counted_per_candidate(
    offline: RoleSettings, tmp_path: Path, failing_judge: Failing
) -> None:
    task = DummiesTask(offline, judge=failing_judge(["chest-pain"]))
    config = PromptOptConfig(budget=400, max_consecutive_failures=50)
    result = optimize_prompt(
        train=DUMMIES, task=task, settings=offline, output=tmp_path, config=config, split=None
    )
    seed = result.candidates[0]
    assert seed.val_scores["chest-pain"] == 0.0
    assert seed.failures >= 1 and "HTTP 500" in seed.errors["chest-pain"]
    assert f"c1 {seed.failures}" in (tmp_path / "summary.md").read_text()
    judged = next(r for r in result.usage if r.role == "judge")
    assert judged.failed == sum(c.failures for c in result.candidates)


def test_with_failures_required_a_gate_with_a_failed_run_refuses_the_child(
    offline: RoleSettings, failing_judge: Failing
) -> None:
    task = DummiesTask(offline, judge=failing_judge(IDS[1:]))
    config = PromptOptConfig(budget=400, failures="require", max_consecutive_failures=500)
    result = optimize_prompt(
        train=DUMMIES, task=task, settings=offline, config=config, split=None, runner=quiet()
    )
    children = [c for c in result.candidates if c.kind == "reflect"]
    assert children and all("gate evaluation(s) failed" in c.why for c in children)


@pytest.mark.parametrize(("limit", "proposals"), [(3, 1), (8, 2), (16, 5)])
def test_proposals_per_round_follow_the_calls_in_flight(
    offline: RoleSettings, limit: int, proposals: int
) -> None:
    config = PromptOptConfig(generations=2, budget=None, merge="off")
    result = optimize_prompt(
        train=DUMMIES, settings=offline, config=config, runner=quiet(max_concurrency=limit)
    )
    assert result.proposals_per_round == proposals
    assert sum(c.round == 2 for c in result.candidates) == proposals


def test_without_feedback_the_score_does_not_rise(offline: RoleSettings) -> None:
    config = PromptOptConfig(feedback=False)
    result = optimize_prompt(train=DUMMIES, settings=offline, config=config, runner=quiet())
    assert result.best_score == result.seed_score
    assert result.stop_reason == "no better best for 4 rounds"
    assert result.rounds == 5


def test_the_same_seed_gives_the_same_candidates(offline: RoleSettings) -> None:
    config = PromptOptConfig(seed=5)
    first = optimize_prompt(settings=offline, config=config, runner=quiet())
    again = optimize_prompt(settings=offline, config=config, runner=quiet())
    assert [c.model_dump() for c in first.candidates] == [c.model_dump() for c in again.candidates]


def test_call_counts_per_role_are_exact(
    offline: RoleSettings, tmp_path: Path, read_jsonl: Rows
) -> None:
    jsonl = read_jsonl
    config = PromptOptConfig(turns=2, budget=500)
    result = optimize_prompt(settings=offline, config=config, output=tmp_path, runner=quiet())
    conversations = len(jsonl(tmp_path / "evaluations.jsonl"))
    rewrites = sum(c.kind in ("reflect", "llm-merge") for c in result.candidates)
    expected = {
        "assistant": 2 * conversations,
        "user": 2 * conversations,
        "judge": conversations,
        "reflect": rewrites,
    }
    assert result.calls == expected
    assert {row.role: row.attempts for row in result.usage} == expected
    assert result.billed == sum(expected.values()) <= 500


def test_rejected_rewrites_are_shown_to_the_reflector_and_not_proposed_again(
    offline: RoleSettings,
) -> None:
    config = PromptOptConfig(feedback=False)
    result = optimize_prompt(train=DUMMIES, settings=offline, config=config, runner=quiet())
    seed = result.candidates[0].components["system_prompt"]
    children = [c for c in result.candidates if c.kind == "reflect"]
    assert len({c.round for c in children}) >= 3
    for child in children:
        earlier = {
            c.components["system_prompt"].removeprefix(seed)
            for c in children
            if c.round < child.round and not c.accepted
        }
        added = child.components["system_prompt"].removeprefix(seed)
        assert added not in earlier, f"{child.id} repeats a rejected rewrite: {added!r}"


def test_repeats_are_averaged_and_counted(
    offline: RoleSettings, tmp_path: Path, read_jsonl: Rows
) -> None:
    jsonl = read_jsonl
    config = PromptOptConfig(repeats=2, turns=1, budget=300)
    result = optimize_prompt(
        DUMMIES[:4], settings=offline, config=config, output=tmp_path, runner=quiet()
    )
    runs = jsonl(tmp_path / "evaluations.jsonl")
    per = Counter((r["candidate"], r["row"], r["purpose"], r["round"]) for r in runs)
    assert set(per.values()) == {2}
    assert result.calls["judge"] == len(runs)


def test_a_role_with_its_own_limit_draws_on_its_own_limiter() -> None:
    base = LLMSettings(provider="simulated", simulation=Simulation(latency_s=0.001))
    limits = {"judge": 1}
    result = optimize_prompt(
        settings=role_settings(base, role_limits=limits),
        config=PromptOptConfig(budget=200),
        runner=fk.Runner(limits=llm_limits(3, role_limits=limits), progress=False),
    )
    used = {u.name: u for u in result.limiters}
    assert used["judge"].peak_in_flight == 1
    assert used["judge"].calls == result.calls["judge"]
    assert used["llm"].calls == sum(result.calls.values()) - result.calls["judge"]


class HappyUser(UserTurn):
    """A user simulator that is satisfied after the assistant's first answer."""

    async def exec_async(self, item: Turn) -> str:  # type: ignore[override]
        return item.dummy.opening if item.turn == 0 else "Thanks, that is all. [DONE]"


def test_a_user_who_is_done_ends_the_conversation_early(offline: RoleSettings) -> None:
    task = DummiesTask(offline, user=HappyUser)
    result = optimize_prompt(
        DUMMIES[:4], task=task, settings=offline, config=PromptOptConfig(budget=300)
    )
    conversations = result.calls["judge"]
    assert result.calls["assistant"] == conversations  # one answer each, not three
    assert "user" not in result.calls  # this user simulator calls no LLM


def test_without_matplotlib_the_png_is_skipped_with_a_note(
    offline: RoleSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, module, None)  # imports of them fail
    config = PromptOptConfig(budget=100)
    result = optimize_prompt(settings=offline, config=config, output=tmp_path, runner=quiet())
    assert not (tmp_path / "progress.png").exists()
    assert (tmp_path / "progress.json").exists()
    assert any("matplotlib" in note for note in result.notes)
    assert "flowkit[report]" in (tmp_path / "summary.md").read_text()


def test_too_many_failures_in_a_row_stop_the_run_with_a_clear_error() -> None:
    down = LLMSettings(
        provider="simulated",
        max_attempts=1,
        simulation=Simulation(latency_s=0, server_error_rate=1),
    )
    config = PromptOptConfig(max_consecutive_failures=3)
    with pytest.raises(TooManyFailuresError, match="3 evaluations failed in a row.*--resume"):
        optimize_prompt(settings=role_settings(down), config=config, runner=quiet())


def test_a_budget_too_small_for_the_seeds_is_refused_before_any_call(offline: RoleSettings) -> None:
    runner = quiet()
    with pytest.raises(PromptOptInputError, match="raise the budget"):
        optimize_prompt(settings=offline, config=PromptOptConfig(budget=10), runner=runner)
    assert runner.last_run is None


def test_a_role_with_no_limiter_in_the_runner_is_refused(offline: RoleSettings) -> None:
    settings = {**offline, "judge": offline["judge"].model_copy(update={"limiter": "judge"})}
    with pytest.raises(PromptOptInputError, match="limiter 'judge'"):
        optimize_prompt(settings=settings, runner=quiet())
