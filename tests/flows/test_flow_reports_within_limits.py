"""Each bundled flow, run as a user runs it, reports no node running more calls at once than
the limits that bound it: its named limiters (plus the run's threads, for work in them) or,
for batt, its worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowkit.cli import main
from flowkit.executors import cpu_count
from flowkit.report import load_report
from flowkit.report.model import RunReport

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str) -> RunReport:
    report = tmp_path / "report"
    assert main(["run", *args, "--no-progress", "--no-store", "--report", str(report)]) == 0
    return load_report(report)


def bound(report: RunReport, node: str) -> int:
    """What the named limiters a node takes allow in flight, together."""
    taken = [lim for lim in report.limiters if node in lim.users]
    assert taken, f"{node} takes no named limiter"
    return sum(lim.max_concurrency or 0 for lim in taken)


def test_translation(tmp_path: Path) -> None:
    report = run(
        tmp_path,
        "translation",
        "--input",
        str(ROOT / "README.md"),
        "--languages",
        "French,German,Japanese",
        "--output",
        str(tmp_path / "out"),
        "--provider",
        "simulated",
        "--max-concurrency",
        "3",
    )
    [llm] = report.limiters
    node = next(n for n in report.nodes if n.name == "TranslateChunks")
    assert node.items > 3 and node.peak_in_flight <= llm.max_concurrency == llm.peak_in_flight
    assert node.findings == [] or not any("above the" in f for f in node.findings)


def test_medmcqa(tmp_path: Path) -> None:
    report = run(tmp_path, "medmcqa", "--limit", "8", "--output", str(tmp_path / "out"))
    threads = min(32, cpu_count() + 4)  # the run's thread pool: the sanitisers' NumPy work
    for node in report.nodes:
        allowed = bound(report, node.name) + (threads if node.cpu_time > 0 else 0)
        assert node.peak_in_flight <= allowed, (node.name, node.peak_in_flight, allowed)
    for lim in report.limiters:
        assert lim.max_concurrency is not None and lim.peak_in_flight <= lim.max_concurrency


@pytest.mark.parametrize("limit", [3])
def test_prompt_opt(tmp_path: Path, limit: int) -> None:
    report = run(
        tmp_path,
        "prompt-opt",
        "--output",
        str(tmp_path / "out"),
        "--budget",
        "120",
        "--max-concurrency",
        str(limit),
    )
    for node in report.nodes:
        if any(node.name in lim.users for lim in report.limiters):
            assert node.peak_in_flight <= bound(report, node.name), node.name
    for lim in report.limiters:
        assert lim.peak_in_flight <= (lim.max_concurrency or 0) == limit


def test_batt(tmp_path: Path) -> None:
    out = str(tmp_path / "predictions.jsonl")
    report = run(tmp_path, "batt", "--limit", "6", "--workers", "2", "--output", out)
    busy = [n for n in report.nodes if n.executor == "process"]
    assert busy and all(n.peak_in_flight <= 2 for n in busy)
