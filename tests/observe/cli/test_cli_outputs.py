"""Every run of a bundled flow leaves something to look at: its outputs and its report in
``flowkit-out/FLOW/RUN_ID/`` unless told otherwise, named by its last line, and found again by
``flowkit report RUN_ID``. (batt's own: tests/flows/test_batt_flow.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def flowkit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FLOWKIT_"))}
    return subprocess.run(
        [sys.executable, "-m", "flowkit.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean,
    )


@pytest.mark.parametrize(
    ("args", "outputs"),
    [
        (
            ("translation", "--input", "doc.md", "--languages", "French"),
            {"doc.French.md", "report"},
        ),
        (
            ("medmcqa", "--limit", "2", "--epsilons", "1", "--scenarios", "1,3.2"),
            {"results.jsonl", "accuracy.csv", "accuracy.md", "accuracy.png", "report"},
        ),
        (
            ("prompt-opt", "--generations", "1", "--sim-latency", "0"),
            {"best_prompt.txt", "candidates.jsonl", "summary.md", "usage.json", "report"},
        ),
    ],
    ids=["translation", "medmcqa", "prompt-opt"],
)
def test_a_bundled_flow_writes_into_its_run_folder_and_names_it_last(
    tmp_path: Path, args: tuple[str, ...], outputs: set[str]
) -> None:
    (tmp_path / "doc.md").write_text("# Title\n\nOne sentence.\n")
    done = flowkit(tmp_path, "run", *args, "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    run_id = done.stdout.split("; run ")[1].split()[0]
    folder = Path("flowkit-out") / args[0] / run_id
    *_, report_line, last = done.stdout.splitlines()
    assert last == f"  outputs: {folder}/"
    assert report_line == f"  report: {folder / 'report' / 'report.html'}"
    written = {p.name for p in (tmp_path / folder).iterdir()}
    assert outputs <= written, written
    assert {p.name for p in (tmp_path / folder / "report").iterdir()} >= {
        "report.json",
        "report.html",
    }
    shown = flowkit(tmp_path, "report", run_id)
    assert shown.returncode == 0, shown.stderr
    assert f"wrote {folder / 'report' / 'report.html'}" in shown.stdout


def test_a_given_output_folder_is_used_and_named(tmp_path: Path) -> None:
    (tmp_path / "doc.md").write_text("# Title\n")
    done = flowkit(tmp_path, "run", "medmcqa", "--limit", "1", "--output", "mine", "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "  outputs: mine/"
    assert (tmp_path / "mine" / "report" / "report.html").is_file()
    assert not (tmp_path / "flowkit-out").exists()


def test_report_of_an_unknown_run_id_is_one_line(tmp_path: Path) -> None:
    done = flowkit(tmp_path, "report", "0123abcd")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "flowkit: error: no report.json in 0123abcd and no report of run 0123abcd under "
        "flowkit-out/ (a report written elsewhere: flowkit report DIR)"
    )
