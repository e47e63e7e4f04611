"""Pareto selection and gate acceptance on hand-made score tables."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from flows.prompt_opt.pareto import accept, pareto_front, select_parent


def test_the_front_weights_each_candidate_by_the_dummies_it_is_best_on() -> None:
    table = {
        "c1": {"a": 0.9, "b": 0.9, "c": 0.9, "d": 0.1},
        "c2": {"a": 0.1, "b": 0.2, "c": 0.3, "d": 1.0},
        "c3": {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5},
    }
    assert pareto_front(table) == {"c1": 3, "c2": 1}


def test_dominated_candidates_are_never_chosen() -> None:
    table = {
        "c1": {"a": 0.5, "b": 0.5},
        "c2": {"a": 0.6, "b": 0.6},  # dominates c1
        "c3": {"a": 0.2, "b": 0.9},
        "c4": {"a": 0.6, "b": 0.1},  # ties c2 on a, worse on b: dominated
    }
    rng = random.Random(7)
    drawn = Counter(select_parent(table, rng) for _ in range(2000))
    assert set(drawn) == {"c2", "c3"}


def test_a_candidate_best_on_one_dummy_only_stays_on_the_front() -> None:
    table = {
        "c1": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0},
        "c2": {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.4},
    }
    assert pareto_front(table) == {"c1": 3, "c2": 1}


def test_of_two_equal_candidates_only_the_earlier_stays() -> None:
    table = {"c3": {"a": 0.5, "b": 0.7}, "c10": {"a": 0.5, "b": 0.7}}
    assert pareto_front(table) == {"c3": 2}


def test_errored_scores_win_nothing_and_count_as_no_score() -> None:
    table = {"c1": {"a": None, "b": 0.2}, "c2": {"a": 0.1, "b": 0.3}}
    assert pareto_front(table) == {"c2": 2}


def test_selection_frequencies_follow_the_weights_on_a_seeded_generator() -> None:
    table = {
        "c1": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0, "e": 0.2, "f": 0.0},
        "c2": {"a": 0.0, "b": 0.0, "c": 0.0, "d": 1.0, "e": 0.2, "f": 0.0},
        "c3": {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0, "e": 0.0, "f": 0.9},
    }
    # e: c1 and c2 tie, so the weights are 4, 2 and 1 out of 7.
    assert pareto_front(table) == {"c1": 4, "c2": 2, "c3": 1}
    rng = random.Random(1234)
    n = 70_000
    drawn = Counter(select_parent(table, rng) for _ in range(n))
    for cid, weight in (("c1", 4), ("c2", 2), ("c3", 1)):
        assert drawn[cid] / n == pytest.approx(weight / 7, abs=0.01)


def test_the_same_seed_draws_the_same_parents() -> None:
    table = {"c1": {"a": 1.0, "b": 0.0}, "c2": {"a": 0.0, "b": 1.0}}
    first = [select_parent(table, random.Random(3)) for _ in range(5)]
    rng_a, rng_b = random.Random(11), random.Random(11)
    assert [select_parent(table, rng_a) for _ in range(50)] == [
        select_parent(table, rng_b) for _ in range(50)
    ]
    assert len(set(first)) == 1


def test_an_empty_table_cannot_be_selected_from() -> None:
    with pytest.raises(ValueError, match="no candidate"):
        select_parent({}, random.Random(0))


def test_a_mutation_must_strictly_beat_its_parents_fresh_sum_on_the_same_rows() -> None:
    parent = [0.5, 1.0, 0.0]
    assert accept([1.0, 1.0, 0.0], [parent]).accepted
    equal = accept([1.0, 0.5, 0.0], [parent])
    assert not equal.accepted and "does not beat" in equal.why
    assert (equal.child, equal.parent) == (1.5, 1.5)


def test_a_merge_needs_at_least_the_better_parents_sum() -> None:
    a, b = [1.0, 0.0], [0.0, 0.8]
    assert accept([0.5, 0.5], [a, b], merge=True).accepted
    assert not accept([0.4, 0.5], [a, b], merge=True).accepted


def test_failed_runs_count_zero_or_refuse_the_child_when_every_run_is_required() -> None:
    zero = accept([1.0, 0.0], [[0.5, 0.4]], failed=1)
    assert zero.accepted and "1 failed, scored 0" in zero.why
    required = accept([1.0, 0.0], [[0.5, 0.4]], failed=1, require_all=True)
    assert not required.accepted and "1 gate evaluation(s) failed" in required.why


def test_a_child_with_no_gate_rows_is_refused() -> None:
    decision = accept([], [[]])
    assert not decision.accepted and "no gate rows" in decision.why
