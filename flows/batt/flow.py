"""The batt flow: every task's samples scored by the battery, in parallel at two levels.

``BattFlow`` fans out over tasks (an AsyncParallelBatchFlow); each task's flow fans out over
its samples (one ``batt()`` call each) on the chosen executor. The sample node's limit is one
counter for the whole run, so every task feeds the same pool of worker processes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel

import flowkit as fk
from flows.batt.batt import BattResult, BattSample, run_sample, task_samples
from flows.batt.dsl import to_lists
from flows.batt.tasks import ArcTask, TaskError, make_task

Executor = Literal["sequential", "thread", "process", "ray"]


class SampleOutcome(BaseModel):
    """One batt() call's result and the seconds it took where it ran."""

    result: BattResult
    seconds: float


class TaskSummary(BaseModel):
    """One line of the predictions file."""

    task_id: str
    solved: bool
    predictions: list[list[list[list[int]]]]
    seconds: float
    error: str | None = None


class ScoreSamples(fk.BatchNode):
    """One batt() call per sample of the task named by ``params["task_id"]``."""

    def prep(self, shared: dict[str, Any]) -> list[BattSample]:
        return task_samples(shared["tasks"][self.params["task_id"]])

    def exec(self, sample: BattSample) -> SampleOutcome:
        t0 = time.perf_counter()
        result = run_sample(sample)
        return SampleOutcome(result=result, seconds=time.perf_counter() - t0)

    def post(self, shared: dict[str, Any], prep_res: Any, exec_res: list[Any]) -> None:
        task: ArcTask = shared["tasks"][self.params["task_id"]]
        shared["summaries"][task.task_id] = summarise(task, exec_res)


class VectorizedScore(fk.Node):
    """The whole task at once through the NumPy path (one call per task)."""

    def prep(self, shared: dict[str, Any]) -> ArcTask:
        return shared["tasks"][self.params["task_id"]]

    def exec(self, task: ArcTask) -> list[SampleOutcome]:
        from flows.batt.vectorized import solve_task_vectorized

        t0 = time.perf_counter()
        results = solve_task_vectorized(task).samples
        share = (time.perf_counter() - t0) / max(len(results), 1)
        return [SampleOutcome(result=r, seconds=share) for r in results]

    def post(self, shared: dict[str, Any], prep_res: ArcTask, exec_res: Any) -> None:
        outcomes = [exec_res] if isinstance(exec_res, fk.ErrorRecord) else exec_res
        shared["summaries"][prep_res.task_id] = summarise(prep_res, outcomes)


class BattFlow(fk.AsyncParallelBatchFlow):
    """Fans out over the tasks in ``shared["tasks"]`` (task id -> ArcTask)."""

    async def prep_async(self, shared: dict[str, Any]) -> list[dict[str, str]]:
        shared.setdefault("summaries", {})
        return [{"task_id": task_id} for task_id in shared["tasks"]]


def summarise(task: ArcTask, outcomes: list[Any]) -> TaskSummary:
    """Turn a task's sample outcomes (or error records) into its summary line."""
    failed = [o for o in outcomes if isinstance(o, fk.ErrorRecord)]
    if failed:
        return TaskSummary(
            task_id=task.task_id,
            solved=False,
            predictions=[],
            seconds=0.0,
            error=f"{failed[0].error_type}: {failed[0].message}",
        )
    tests = [o.result for o in outcomes if o.result.kind == "test"]
    solved = len(tests) == len(task.test) and all(
        to_lists(y) in r.predictions for (_, y), r in zip(task.test, tests, strict=True)
    )
    return TaskSummary(
        task_id=task.task_id,
        solved=solved,
        predictions=[r.predictions for r in tests],
        seconds=sum(o.seconds for o in outcomes),
    )


def validate_tasks(raw: Mapping[str, Any]) -> tuple[dict[str, ArcTask], dict[str, str]]:
    """Validate raw tasks ({id: {"train": [...], "test": [...]}} or ArcTask); split the bad."""
    good: dict[str, ArcTask] = {}
    bad: dict[str, str] = {}
    for task_id, data in raw.items():
        try:
            if data is None:
                raise TaskError(task_id, "not found")
            if isinstance(data, ArcTask):
                good[task_id] = make_task(task_id, data.train, data.test)
            elif isinstance(data, Mapping):
                good[task_id] = make_task(task_id, data.get("train"), data.get("test"))
            else:
                raise TaskError(task_id, f"is a {type(data).__name__}, not a task")
        except TaskError as exc:
            bad[task_id] = str(exc)
    return good, bad


def build_flow(
    executor: Executor = "process",
    *,
    vectorized: bool = False,
    workers: int | None = None,
    task_concurrency: int | None = None,
) -> BattFlow:
    """The batt flow for one executor; ``workers`` bounds batt() calls in flight."""
    if vectorized:
        inner: fk.BaseNode = VectorizedScore(
            executor=None if executor == "sequential" else executor,
            max_concurrency=workers,
            on_error="collect",
        )
    else:
        inner = ScoreSamples(
            executor=None if executor == "sequential" else executor,
            max_concurrency=workers,
            on_error="collect",
        )
    lanes = 1 if executor == "sequential" else (task_concurrency or 64)
    return BattFlow(start=fk.Flow(start=inner, name="task"), max_concurrency=lanes, name="batt")
