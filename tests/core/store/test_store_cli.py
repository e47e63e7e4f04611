"""The command line's durable runs: --store, --resume, `flowkit runs`, `flowkit export`."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

JOB = textwrap.dedent(
    """
    import flowkit as fk

    class Square(fk.BatchNode):
        def prep(self, shared):
            return list(range(shared.get("n", 5)))

        def exec(self, item):
            with open("calls.txt", "a") as f:
                f.write(f"{item}\\n")
            return item * item

    square = Square()
    """
)


def flowkit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowkit.cli", *args, "--no-progress"]
        if args[0] == "run"
        else [sys.executable, "-m", "flowkit.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_store_list_export_and_resume(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(JOB)
    first = flowkit(tmp_path, "run", "job:square", "--run-id", "r1")
    assert first.returncode == 0, first.stderr
    assert "run r1" in first.stdout
    assert (tmp_path / ".flowkit" / "runs.db").exists()  # the default store

    listed = flowkit(tmp_path, "runs")
    assert listed.returncode == 0
    assert re.search(r"r1\s.*Square\s.*done\s.*5\s.*0", listed.stdout)

    jsonl = flowkit(tmp_path, "export", "r1")
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [(r["index"], r["ok"], r["value"]) for r in rows] == [(i, True, i * i) for i in range(5)]

    out = tmp_path / "r1.csv"
    assert (
        flowkit(tmp_path, "export", "r1", "--format", "csv", "--output", str(out)).returncode == 0
    )
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [row["value"] for row in table] == ["0", "1", "4", "9", "16"]

    again = flowkit(tmp_path, "run", "job:square", "--resume", "r1")
    assert again.returncode == 0, again.stderr
    assert "5 reused from the store" in again.stdout
    assert (tmp_path / "calls.txt").read_text().split() == ["0", "1", "2", "3", "4"]


def test_unknown_runs_and_stores_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(JOB)
    assert flowkit(tmp_path, "runs").returncode == 2  # no store yet
    assert flowkit(tmp_path, "run", "job:square").returncode == 0
    missing = flowkit(tmp_path, "run", "job:square", "--resume", "nope")
    assert missing.returncode == 2
    assert "run 'nope' is not in" in missing.stderr
    assert flowkit(tmp_path, "export", "nope").returncode == 2
    no_store = flowkit(tmp_path, "run", "job:square", "--no-store")
    assert no_store.returncode == 0
