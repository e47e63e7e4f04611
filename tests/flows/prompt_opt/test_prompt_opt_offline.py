"""The offline optimisation on the bundled clinic dummies (simulated provider, no latency)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import flowkit as fk
from flows.prompt_opt import (
    PromptOptConfig,
    PromptOptInputError,
    TooManyFailuresError,
    UserTurn,
    llm_limits,
    load_dummies,
    optimize_prompt,
    prompt_opt_flow,
    role_settings,
)
from flows.prompt_opt.nodes import RoleSettings, Turn
from nodes.llm import LLMSettings, Simulation


def test_the_best_score_rises_from_the_seed_to_the_target(
    offline: RoleSettings, tmp_path: Path
) -> None:
    result = optimize_prompt(settings=offline, output=tmp_path)
    assert result.seed_score < 0.2
    assert result.best_score >= 0.9
    assert sum(result.calls.values()) <= PromptOptConfig().budget
    bests = [p.best for p in result.progress]
    assert bests == sorted(bests)  # the best score never decreases
    assert (tmp_path / "best_prompt.txt").read_text() == result.best_prompt
    lines = (tmp_path / "candidates.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [c.id for c in result.candidates]
    conversations = sum(
        len(c.scores) for c in result.candidates if not c.why.startswith("same text")
    )
    assert len(list((tmp_path / "transcripts").iterdir())) == conversations
    assert (tmp_path / "progress.png").stat().st_size > 0
    assert "meets every need" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "report" / "report.json").exists()


def test_without_feedback_the_score_does_not_rise(offline: RoleSettings) -> None:
    result = optimize_prompt(settings=offline, config=PromptOptConfig(feedback=False))
    assert result.best_score == result.seed_score
    assert result.stop_reason.startswith("no child accepted")
    rejected = [c for c in result.candidates if c.kind == "reflect"]
    assert rejected and not any(c.accepted for c in rejected)


def test_the_same_seed_gives_the_same_candidates(offline: RoleSettings) -> None:
    config = PromptOptConfig(seed=5)
    first = optimize_prompt(settings=offline, config=config)
    again = optimize_prompt(settings=offline, config=config)
    assert [c.model_dump() for c in first.candidates] == [c.model_dump() for c in again.candidates]


def test_call_counts_per_role_are_exact(offline: RoleSettings) -> None:
    config = PromptOptConfig(turns=2)
    result = optimize_prompt(settings=offline, config=config)
    conversations = sum(
        len(c.scores) for c in result.candidates if not c.why.startswith("same text")
    )
    rewrites = sum(c.kind != "seed" for c in result.candidates)
    expected = {
        "assistant": 2 * conversations,
        "user": 2 * conversations,
        "judge": conversations,
        "reflect": rewrites,
    }
    assert result.calls == expected
    assert {row.role: row.calls for row in result.usage} == expected  # the runner's count


def test_the_budget_is_never_exceeded(offline: RoleSettings) -> None:
    result = optimize_prompt(settings=offline, config=PromptOptConfig(budget=200))
    assert sum(result.calls.values()) <= 200
    assert result.stop_reason == "budget spent"


def test_generational_mode_scores_every_child_on_every_dummy(offline: RoleSettings) -> None:
    dummies = load_dummies()[:2]
    config = PromptOptConfig(mode="generational", generations=2, budget=None, merges=0)
    result = optimize_prompt(
        dummies, ["Help callers.", "Help callers politely."], settings=offline, config=config
    )
    assert [c.generation for c in result.candidates] == [1, 1, 2, 2]
    assert all(len(c.scores) == 2 for c in result.candidates)
    assert sum(result.calls.values()) == 2 * 2 * 7 + 2 + 2 * 2 * 7
    assert result.rounds == 2


def test_a_failed_conversation_is_an_error_not_a_zero() -> None:
    flaky = LLMSettings(
        provider="simulated",
        max_attempts=1,
        simulation=Simulation(latency_s=0, server_error_rate=0.1, seed=3),
    )
    config = PromptOptConfig(budget=400, max_consecutive_failures=50)
    result = optimize_prompt(settings=role_settings(flaky), config=config)
    errored = [(c, d) for c in result.candidates for d in c.errors]
    assert errored
    for cand, dummy in errored:
        if len([k for k in cand.errors if k == dummy]) and cand.scores[dummy] is not None:
            pytest.fail(f"{cand.id} on {dummy} errored but was scored")
        assert cand.scores[dummy] is None
        assert "LLMServerError" in cand.errors[dummy]


def test_consecutive_failures_stop_the_run_with_a_clear_error() -> None:
    down = LLMSettings(
        provider="simulated",
        max_attempts=1,
        simulation=Simulation(latency_s=0, server_error_rate=1),
    )
    config = PromptOptConfig(max_consecutive_failures=3)
    with pytest.raises(TooManyFailuresError, match="3 conversations failed in a row.*--resume"):
        optimize_prompt(settings=role_settings(down), config=config)


def test_a_budget_too_small_for_the_seeds_is_refused_before_any_call(offline: RoleSettings) -> None:
    runner = fk.Runner(limits=llm_limits())
    with pytest.raises(PromptOptInputError, match="raise the budget"):
        optimize_prompt(settings=offline, config=PromptOptConfig(budget=10), runner=runner)
    assert runner.last_run is None


def test_a_role_with_no_limiter_in_the_runner_is_refused(offline: RoleSettings) -> None:
    settings = {**offline, "judge": offline["judge"].model_copy(update={"limiter": "judge"})}
    with pytest.raises(PromptOptInputError, match="limiter 'judge'"):
        optimize_prompt(settings=settings)


def test_rejected_rewrites_are_shown_to_the_reflector_and_not_proposed_again(
    offline: RoleSettings,
) -> None:
    result = optimize_prompt(settings=offline, config=PromptOptConfig(feedback=False))
    seed = result.candidates[0].text
    children = [c for c in result.candidates if c.kind == "reflect"]
    assert len({c.generation for c in children}) >= 3
    for child in children:
        earlier = {
            c.text.removeprefix(seed)
            for c in children
            if c.generation < child.generation and not c.accepted
        }
        added = child.text.removeprefix(seed)
        assert added not in earlier, f"{child.id} repeats a rejected rewrite: {added!r}"


def test_merges_of_two_front_members_join_the_pool(offline: RoleSettings) -> None:
    result = optimize_prompt(settings=offline)
    merges = [c for c in result.candidates if c.kind == "merge"]
    assert merges and all(len(c.parents) == 2 for c in merges)
    assert any(c.accepted and "better parent" in c.why for c in merges)


def test_repeats_are_averaged_and_counted(offline: RoleSettings) -> None:
    config = PromptOptConfig(repeats=2, turns=1, budget=300)
    result = optimize_prompt(load_dummies()[:3], settings=offline, config=config)
    conversations = 2 * sum(
        len(c.scores) for c in result.candidates if not c.why.startswith("same text")
    )
    assert result.calls["judge"] == conversations
    assert result.calls["assistant"] == result.calls["user"] == conversations


def test_a_role_with_its_own_limit_draws_on_its_own_limiter() -> None:
    base = LLMSettings(provider="simulated", simulation=Simulation(latency_s=0.001))
    limits = {"judge": 1}
    runner = fk.Runner(limits=llm_limits(3, role_limits=limits))
    result = optimize_prompt(
        settings=role_settings(base, role_limits=limits),
        config=PromptOptConfig(budget=200),
        runner=runner,
    )
    used = {u.name: u for u in result.limiters}
    assert used["judge"].peak_in_flight == 1
    assert used["judge"].calls == result.calls["judge"]
    assert used["llm"].calls == sum(result.calls.values()) - result.calls["judge"]


class HappyUser(UserTurn):
    """A user simulator that is satisfied after the assistant's first answer."""

    async def exec_async(self, item: Turn) -> str:
        return item.dummy.opening if item.turn == 0 else "Thanks, that is all. [DONE]"


def test_a_user_who_is_done_ends_the_conversation_early(offline: RoleSettings) -> None:
    config = PromptOptConfig(turns=3, budget=300)
    flow = prompt_opt_flow(offline, user=HappyUser)
    result = optimize_prompt(load_dummies()[:2], settings=offline, config=config, flow=flow)
    conversations = result.calls["judge"]
    assert result.calls["assistant"] == conversations  # one answer each, not three
    assert result.calls["user"] == 2 * conversations


def test_without_matplotlib_the_png_is_skipped_with_a_note(
    offline: RoleSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, module, None)  # imports of them fail
    runner = fk.Runner(limits=llm_limits())  # no run report: it would draw with matplotlib
    config = PromptOptConfig(budget=100)
    result = optimize_prompt(settings=offline, config=config, output=tmp_path, runner=runner)
    assert not (tmp_path / "progress.png").exists()
    assert (tmp_path / "progress.json").exists()
    assert any("matplotlib" in note for note in result.notes)
    assert "flowkit[report]" in (tmp_path / "summary.md").read_text()
