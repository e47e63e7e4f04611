"""``flowkit run prompt-opt`` through ``flowkit.cli.main``: the budget plan, outputs, usage."""

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
    assert "at most 171 calls per round" in printed
    assert "at least 5 full round(s)" in printed
    assert "limiter llm: peak 3/3" in printed
    out = tmp_path / "out"
    for name in ("best_prompt.txt", "candidates.jsonl", "progress.png", "summary.md"):
        assert (out / name).exists(), name
    assert (out / "report" / "report.html").exists()
    usage = {row["role"]: row for row in json.loads((out / "usage.json").read_text())}
    assert usage["judge"]["model"] == "judge-model" and usage["judge"]["cost"] > 0
    assert usage["assistant"]["cost"] is None


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
