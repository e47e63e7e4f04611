"""Scoring the battery on one ARC sample, and whole tasks as sequences of samples.

A task becomes one :class:`BattSample` per demo pair (scored against its
expected output) and one per test input (expected output withheld). Each
sample is an independent plain tuple, so samples can be fanned out to process
pools; :func:`batt` is pure and its :class:`BattResult` is JSON-serialisable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import eq
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from flows.batt.battery import Evaluator, Pair, Program, build_battery, program_name
from flows.batt.dsl import Grid, to_lists
from flows.batt.tasks import ArcTask

MAX_PREDICTIONS = 3
"""ARC scores a test output as solved if any of up to three attempts is exact."""


class BattSample(NamedTuple):
    """The inputs of one :func:`batt` call: ``(task_id, S, I, C)``."""

    task_id: str
    demos: tuple[Pair, ...]
    grid: Grid
    expected: Grid | None


class BattResult(BaseModel):
    """Outcome of running the battery on one sample.

    Demo samples (``kind == "demo"``): ``n_exact`` candidates reproduce the
    expected output; ``best_accuracy`` is the best cell accuracy and ``programs``
    the first (up to three) candidates reaching it. Test samples
    (``kind == "test"``): ``n_exact`` candidates are exact on every demo pair;
    ``predictions`` are their first distinct outputs (at most three) and
    ``programs`` the candidates that produced them.
    """

    model_config = ConfigDict(frozen=True)

    task_id: str
    kind: Literal["demo", "test"]
    n_candidates: int
    n_exact: int
    best_accuracy: float | None = None
    programs: list[str]
    predictions: list[list[list[int]]] = []


class TaskResult(BaseModel):
    """All sample results of a task, in :func:`task_samples` order, and whether it is solved."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    samples: list[BattResult]
    solved: bool


def _accuracy(out: Grid, expected: Grid) -> float:
    same = sum(sum(map(eq, ro, re)) for ro, re in zip(out, expected, strict=True))
    return same / (len(expected) * len(expected[0]))


def score_demo(
    task_id: str, programs: Sequence[Program], outputs: Sequence[Grid | None], expected: Grid
) -> BattResult:
    """Score candidate outputs (``None`` = no valid output) against the expected grid."""
    target = (len(expected), len(expected[0]))
    cache: dict[int, float] = {}
    best, n_exact, best_at = 0.0, 0, []
    for i, out in enumerate(outputs):
        if out is None or (len(out), len(out[0])) != target:
            continue
        acc = cache.get(id(out))
        if acc is None:
            acc = cache[id(out)] = 1.0 if out == expected else _accuracy(out, expected)
        if acc == 1.0:
            n_exact += 1
        if acc > best:
            best, best_at = acc, [i]
        elif acc == best and acc > 0 and len(best_at) < MAX_PREDICTIONS:
            best_at.append(i)
    return BattResult(
        task_id=task_id,
        kind="demo",
        n_candidates=len(programs),
        n_exact=n_exact,
        best_accuracy=best,
        programs=[program_name(programs[i]) for i in best_at],
    )


def pick_predictions(
    task_id: str,
    programs: Sequence[Program],
    n_consistent: int,
    outputs: Iterable[tuple[int, Grid | None]],
) -> BattResult:
    """Keep the first distinct outputs of demo-consistent candidates ``(index, output)``."""
    preds: list[Grid] = []
    names: list[str] = []
    for i, out in outputs:
        if out is not None and out not in preds:
            preds.append(out)
            names.append(program_name(programs[i]))
            if len(preds) == MAX_PREDICTIONS:
                break
    return BattResult(
        task_id=task_id,
        kind="test",
        n_candidates=len(programs),
        n_exact=n_consistent,
        programs=names,
        predictions=[to_lists(p) for p in preds],
    )


def batt(task_id: str, demos: Sequence[Pair], grid: Grid, expected: Grid | None) -> BattResult:
    """Run every candidate built from the demos ``S`` on input ``I`` and score it against ``C``.

    With ``expected`` (``C``) given, candidates are scored on exact match and
    cell accuracy. With ``expected`` None (a test input), candidates exact on
    every demo pair are run on ``grid`` and their first distinct outputs are
    the predictions.
    """
    ev = Evaluator()
    programs = build_battery(demos, ev)
    if expected is not None:
        target = (len(expected), len(expected[0]))
        return score_demo(task_id, programs, ev.run_all(programs, grid, target), expected)
    alive = list(range(len(programs)))
    for x, y in demos:
        outs = ev.run_all([programs[i] for i in alive], x, (len(y), len(y[0])))
        alive = [i for i, out in zip(alive, outs, strict=True) if out == y]
    outputs = ((i, ev.run(programs[i], grid)) for i in alive)
    return pick_predictions(task_id, programs, len(alive), outputs)


def task_samples(task: ArcTask) -> list[BattSample]:
    """The independent :func:`batt` calls of a task: every demo pair, then every test input."""
    demos = task.train
    return [BattSample(task.task_id, demos, x, y) for x, y in demos] + [
        BattSample(task.task_id, demos, x, None) for x, _ in task.test
    ]


def run_sample(sample: BattSample) -> BattResult:
    """``batt(*sample)``."""
    return batt(*sample)


def is_solved(task: ArcTask, results: Sequence[BattResult]) -> bool:
    """True when, for every test pair, some prediction equals the expected output."""
    tests = [r for r in results if r.kind == "test"]
    if len(tests) != len(task.test):
        return False
    return all(to_lists(y) in r.predictions for (_, y), r in zip(task.test, tests, strict=True))


def solve_task(task: ArcTask) -> TaskResult:
    """Process a whole task sequentially, one :func:`batt` call per sample."""
    results = [run_sample(s) for s in task_samples(task)]
    return TaskResult(task_id=task.task_id, samples=results, solved=is_solved(task, results))
