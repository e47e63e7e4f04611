"""``flowkit run prompt-opt`` through ``flowkit.cli.main``: the plan, outputs, usage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowkit.cli import main
from flows.prompt_opt.cli import PromptOptCommand


def run(*args: str) -> int:
    return main(["run", "prompt-opt", "--no-progress", *args], commands=[PromptOptCommand()])


def test_runs_offline_and_writes_every_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    status = run(
        *("--provider", "simulated", "--sim-latency", "0", "--output", "out"),
        *("--model", "judge=judge-model", "--price", "judge=1,2"),
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "dummies: 8 dummies split with seed 0: 4 training, 4 validation" in printed
    assert "proposals per round: 1 (= 3 calls in flight // minibatch 3)" in printed
    assert "at most 71 calls per round" in printed
    assert "round 2: c2 (reflect of c1) accepted" in printed
    assert "limiter llm: peak 3/3" in printed
    out = tmp_path / "out"
    for name in (
        "best_prompt.txt",
        "best_candidate.json",
        "candidates.jsonl",
        "evaluations.jsonl",
        "events.jsonl",
        "progress.png",
        "summary.md",
    ):
        assert (out / name).exists(), name
    assert (out / "report" / "report.html").exists()
    usage = {row["role"]: row for row in json.loads((out / "usage.json").read_text())}
    assert usage["judge"]["model"] == "judge-model" and usage["judge"]["cost"] > 0
    assert usage["assistant"]["cost"] is None


def test_proposals_follow_max_concurrency_and_one_set_can_serve_both_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    status = run(
        *("--provider", "simulated", "--sim-latency", "0", "--output", "out"),
        *("--max-concurrency", "16", "--no-split", "--generations", "2"),
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "proposals per round: 5 (= 16 calls in flight // minibatch 3)" in printed
    assert "warning: validation equals training" in printed
    assert "8 dummies, all for training and validation (as asked)" in printed


def test_a_dataset_runs_with_a_metric_and_a_test_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [
        {"id": f"q{n}", "input": f"{n} + {n}?", "answer": str(2 * n), "instruction": "add"}
        for n in range(6)
    ]
    Path("qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    status = run(
        *("--provider", "simulated", "--sim-latency", "0", "--output", "out"),
        *("--dataset", "qa.jsonl", "--metric", "contains", "--split", "0.34,0.33,0.33"),
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "rows: 6 rows split with seed 0: 2 training, 2 validation, 2 test" in printed
    assert "test 1.000 (seed 0.000)" in printed
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "Test (2 rows, scored once at the end): best 1.000, seed 0.000." in summary


def test_bad_options_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dummies.json").write_text('[{"id": "x"}]')
    assert run("--provider", "simulated", "--output", "o", "--dummies", "dummies.json") == 2
    assert "entry 0" in capsys.readouterr().err
    assert run("--provider", "simulated", "--output", "o", "--budget", "5") == 2
    assert "raise the budget" in capsys.readouterr().err
    assert run("--provider", "simulated", "--output", "o", "--role-limit", "critic=2") == 2
    assert "unknown role 'critic'" in capsys.readouterr().err
    assert run("--provider", "simulated", "--output", "o", "--max-cost", "1") == 2
    assert "--max-cost needs prices" in capsys.readouterr().err
    assert run("--provider", "simulated", "--output", "o", "--metric", "exact") == 2
    assert "--metric needs --dataset" in capsys.readouterr().err
    assert run("--provider", "simulated", "--output", "o", "--split", "x") == 2
    assert "TRAIN,VAL" in capsys.readouterr().err


def test_max_cost_is_one_cap_for_the_search_and_the_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    prices = [f"--price={role}=1,2" for role in ("assistant", "user", "judge", "reflect")]
    status = run(
        *("--provider", "simulated", "--sim-latency", "0", "--output", "out"),
        *("--max-cost", "0.02", *prices),
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "cost cap" in printed  # the search planned its rounds within the cap
    usage = json.loads((tmp_path / "out" / "usage.json").read_text())
    ledger = sum(row["cost"] for row in usage)
    # the runner priced the same calls the same way, and would have stopped them at the cap
    assert f"budget run: ${ledger:,.4f} of $0.02" in printed
    assert 0 < ledger <= 0.02
