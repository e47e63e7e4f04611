"""batt() on single samples, whole tasks, and the solved check."""

from __future__ import annotations

import json
import pickle

import pytest

from flows.batt.batt import (
    MAX_PREDICTIONS,
    BattResult,
    BattSample,
    batt,
    is_solved,
    run_sample,
    solve_task,
    task_samples,
)
from flows.batt.dsl import Grid, to_lists
from flows.batt.tasks import ArcTask, load_tasks


def G(text: str) -> Grid:
    return tuple(tuple(int(ch) for ch in row) for row in text.split("/"))


MIRROR = ArcTask(
    "mirror",
    train=(
        (G("120/003"), G("021/300")),
        (G("45/06"), G("54/60")),
        (G("7/8"), G("7/8")),
    ),
    test=((G("1200/0034"), G("0021/4300")),),
)
"""A hand-made task: mirror every grid left-right."""

NOISE = ArcTask(
    "noise",
    train=((G("123/456"), G("7193/5820")), (G("34/01"), G("5"))),
    test=((G("56"), G("8")),),
)
"""A task without a rule the battery could find."""


def test_demo_sample_is_scored_against_its_output() -> None:
    x, y = MIRROR.train[0]
    result = batt("mirror", MIRROR.train, x, y)
    assert result.kind == "demo"
    assert result.task_id == "mirror"
    assert result.n_candidates > 1000
    assert result.n_exact >= 1
    assert result.best_accuracy == 1.0
    assert result.programs[0] == "flip_h"
    assert len(result.programs) <= MAX_PREDICTIONS
    assert result.predictions == []


def test_demo_sample_without_exact_candidate_reports_best_accuracy() -> None:
    x, y = NOISE.train[0]
    result = batt("noise", NOISE.train, x, y)
    assert result.n_exact == 0
    assert result.best_accuracy is not None
    assert 0.0 < result.best_accuracy < 1.0
    assert result.programs


def test_test_sample_predicts_from_demo_consistent_candidates() -> None:
    x, _ = MIRROR.test[0]
    result = batt("mirror", MIRROR.train, x, None)
    assert result.kind == "test"
    assert result.best_accuracy is None
    assert result.n_exact >= 1
    assert result.programs[0] == "flip_h"
    assert result.predictions[0] == [[0, 0, 2, 1], [4, 3, 0, 0]]
    assert 1 <= len(result.predictions) <= MAX_PREDICTIONS
    assert len({json.dumps(p) for p in result.predictions}) == len(result.predictions)
    assert len(result.programs) == len(result.predictions)


def test_test_sample_without_consistent_candidates_predicts_nothing() -> None:
    result = batt("noise", NOISE.train, NOISE.test[0][0], None)
    assert (result.n_exact, result.predictions, result.programs) == (0, [], [])


def test_results_are_deterministic_json_and_picklable() -> None:
    x, _ = MIRROR.test[0]
    first = batt("mirror", MIRROR.train, x, None)
    assert batt("mirror", MIRROR.train, x, None) == first
    data = json.loads(first.model_dump_json())
    assert BattResult.model_validate(data) == first
    assert json.loads(json.dumps(first.model_dump())) == data
    assert pickle.loads(pickle.dumps(first)) == first


def test_task_samples_are_plain_independent_tuples() -> None:
    samples = task_samples(MIRROR)
    assert len(samples) == 4
    assert [s.expected is None for s in samples] == [False, False, False, True]
    assert samples[0] == BattSample("mirror", MIRROR.train, *MIRROR.train[0])
    assert samples[3] == ("mirror", MIRROR.train, MIRROR.test[0][0], None)
    assert all(type(s) is BattSample and isinstance(s, tuple) for s in samples)
    assert pickle.loads(pickle.dumps(samples)) == samples
    assert [run_sample(s) for s in samples] == [batt(*s) for s in samples]


def test_solve_task_and_solved_check() -> None:
    result = solve_task(MIRROR)
    assert result.task_id == "mirror"
    assert result.solved
    assert [r.kind for r in result.samples] == ["demo", "demo", "demo", "test"]
    assert is_solved(MIRROR, result.samples)
    wrong = MIRROR._replace(test=((MIRROR.test[0][0], G("1")),))
    assert not is_solved(wrong, result.samples)
    assert not is_solved(MIRROR, result.samples[:3])
    assert not solve_task(NOISE).solved


def test_solved_check_needs_every_test_pair() -> None:
    two = MIRROR._replace(test=(MIRROR.test[0], (G("12"), G("21"))))
    results = [run_sample(s) for s in task_samples(two)]
    assert is_solved(two, results)
    assert not is_solved(two._replace(test=(MIRROR.test[0], (G("12"), G("12")))), results)


@pytest.mark.parametrize(
    ("task_id", "program"),
    [("3c9b0459", "rot180"), ("0d3d703e", "map_colors(0564312798)"), ("a416b8f3", "tile(1,2)")],
)
def test_real_training_tasks_are_solved(task_id: str, program: str) -> None:
    (task,) = load_tasks("training", ids=[task_id])
    result = solve_task(task)
    assert result.solved
    assert result.samples[-1].programs[0] == program
    assert result.samples[-1].predictions[0] == to_lists(task.test[0][1])
