"""The experiment flow with the simulated provider: cells, table, failures, resume, CLI."""

from __future__ import annotations

import csv
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flowkit.cli import main
from flows.medmcqa import (
    DEFAULT_LIMITS,
    Experiment,
    QuestionFile,
    SimulatedModels,
    build_flow,
    hashed_embedder,
    run_experiment,
    sample_path,
)
from flows.medmcqa.data import Question
from nodes.llm import LLMSettings, Simulation

FAST = Simulation(latency_s=0.0)


def settings(role: str, simulation: Simulation = FAST) -> LLMSettings:
    return LLMSettings(
        provider="simulated", model=f"{role}-sim", limiter=role, simulation=simulation
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("medmcqa")
    # zero latency: the run is all CPU, so the blocking detector's timings would mean nothing
    runner = fk.Runner(limits=DEFAULT_LIMITS, report=out / "report", detect_blocking=None)
    table = run_experiment(
        QuestionFile(sample_path()),
        out,
        local=settings("local"),
        remote=settings("remote"),
        runner=runner,
    )
    return out, table


def test_every_cell_of_every_question_is_written_once(full_run: tuple[Path, Any]) -> None:
    out, _ = full_run
    cells = lines(out / "results.jsonl")
    n = len(list(QuestionFile(sample_path())))
    assert len(cells) == n * 12
    per = Counter((c["scenario"], c["epsilon"]) for c in cells)
    # the ε-independent scenarios ran once per question, the private ones once per ε
    assert per[("1", None)] == per[("2", None)] == per[("4", None)] == n
    assert all(per[(s, e)] == n for s in ("3.0", "3.2", "3.3") for e in (1.0, 2.0, 3.0))
    assert {c["error"] for c in cells} == {None}
    private = [c for c in cells if c["scenario"].startswith("3.")]
    assert all(c["sanitised"] and c["cot"] and c["answer"] in "ABCD" for c in private)
    assert all(c["calls"] == 2 and c["tokens"] > 0 for c in private)
    assert {(c["scenario"], c["mechanism"]) for c in private} == {
        ("3.0", "phrasedp"),
        ("3.2", "inferdpt"),
        ("3.3", "santext+"),
    }


def test_the_offline_table_orders_as_the_experiment_expects(full_run: tuple[Path, Any]) -> None:
    _, table = full_run

    def acc(scenario: str, eps: float | None = None) -> float:
        value = table.get(scenario, eps).accuracy
        assert value is not None
        return float(value)

    private = {e: statistics.fmean(acc(s, e) for s in ("3.0", "3.2", "3.3")) for e in (1, 2, 3)}
    assert acc("4") >= acc("2") >= statistics.fmean(private.values()) >= acc("1")
    assert private[1.0] <= private[2.0] <= private[3.0]
    assert private[1.0] < private[3.0]


def test_outputs_hold_the_table_with_intervals_and_a_plot(full_run: tuple[Path, Any]) -> None:
    out, _ = full_run
    rows = list(csv.DictReader((out / "accuracy.csv").open()))
    assert len(rows) == 3 + 3 * 3
    first = rows[0]
    assert first["scenario"] == "1" and first["epsilon"] == "" and first["n"] == "64"
    assert float(first["ci_low"]) < float(first["accuracy"]) < float(first["ci_high"])
    assert "| 3.3 SANTEXT+ | 2 | 64 |" in (out / "accuracy.md").read_text()
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "report" / "report.json").exists()


class FailingCoT(SimulatedModels):
    """A remote model that fails whenever it is asked about the sanitised text of fk-002."""

    def cot(self, question: Question, seen: str) -> str:
        if question.id == "fk-002" and seen != question.question:
            raise RuntimeError("remote model crashed")
        return super().cot(question, seen)


def small_experiment(simulator: SimulatedModels, **options: Any) -> Experiment:
    questions = QuestionFile(sample_path(), limit=4)
    return Experiment(
        settings("local"),
        settings("remote"),
        hashed_embedder(questions),
        simulator=simulator,
        **options,
    )


def run(
    experiment: Experiment, out: Path, progress_every: float | None = None, **runner: Any
) -> tuple[fk.Runner, dict[str, Any]]:
    shared = {
        "questions": QuestionFile(sample_path(), limit=4),
        "output": out,
        "progress_every": progress_every,
    }
    r = fk.Runner(
        limits={"local": fk.Limit(max_concurrency=4), "remote": fk.Limit(max_concurrency=4)},
        **runner,
    )
    r.run(build_flow(experiment), shared)
    return r, shared


def test_a_failed_cell_is_an_error_record_and_the_rest_finish(tmp_path: Path) -> None:
    _, shared = run(small_experiment(FailingCoT()), tmp_path)
    cells = lines(tmp_path / "results.jsonl")
    failed = [c for c in cells if c["error"]]
    assert len(cells) == 4 * 12
    assert {(c["question_id"], c["scenario"]) for c in failed} == {
        ("fk-002", s) for s in ("3.0", "3.2", "3.3")
    }
    assert len(failed) == 9 and all("remote model crashed" in c["error"] for c in failed)
    table = shared["table"]
    assert table.failed == 9 and table.get("3.2", 2.0).failed == 1
    assert table.get("3.2", 2.0).n == 3 and table.get("1").n == 4


def test_resume_reruns_only_the_failed_cells_and_ends_like_a_clean_run(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    first, _ = run(small_experiment(FailingCoT()), tmp_path / "a", store=store)
    assert first.last_run is not None
    again, shared = run(
        small_experiment(SimulatedModels()),
        tmp_path / "b",
        store=store,
        resume=first.last_run.run_id,
    )
    _, clean = run(small_experiment(SimulatedModels()), tmp_path / "c")
    assert again.last_run is not None
    # 48 cells and 12 paraphrase items were stored; only the 9 failed cells ran again
    assert again.last_run.resumed == 4 * 12 + 4 * 3 - 9
    assert shared["table"].to_csv() == clean["table"].to_csv()
    assert not [c for c in lines(tmp_path / "b" / "results.jsonl") if c["error"]]


def test_scenarios_and_epsilons_choose_the_cells(tmp_path: Path) -> None:
    run(small_experiment(SimulatedModels(), scenarios=("4", "3.3"), epsilons=(0.5, 8)), tmp_path)
    cells = lines(tmp_path / "results.jsonl")
    assert Counter((c["scenario"], c["epsilon"]) for c in cells) == {
        ("4", None): 4,
        ("3.3", 0.5): 4,
        ("3.3", 8.0): 4,
    }


def test_progress_lines_count_questions_and_cells_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(small_experiment(SimulatedModels()), tmp_path, progress_every=0.0)
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 4 * 12  # every 0 s: one line per cell
    assert said[-1] == "medmcqa: 4 questions done, 0 in progress; 48 cells done, 0 failed"


def test_flowkit_run_medmcqa_writes_the_outputs_and_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "medmcqa",
            "--limit",
            "3",
            "--epsilons",
            "1,3",
            "--scenarios",
            "1,2,3.0",
            "--output",
            str(tmp_path / "out"),
            "--store",
            str(tmp_path / "runs.db"),
            "--no-progress",
            "--local-max-concurrency",
            "2",
            "--remote-max-concurrency",
            "3",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "| 3.0 PhraseDP | 3 | 3 |" in printed
    assert "3 questions, 12 cells (0 failed)" in printed
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["accuracy.csv", "accuracy.md", "accuracy.png", "report", "results.jsonl"]
    assert len(lines(tmp_path / "out" / "results.jsonl")) == 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenarios", "1,5"], "unknown scenario"),
        (["--epsilons", "1,-2"], "positive"),
        (["--cop-base", "0"], "--cop-base 1"),
        (["--provider", "openai"], "--local-model"),
    ],
)
def test_bad_options_exit_2_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["run", "medmcqa", "--output", str(tmp_path), "--no-store", *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_flowkit_graph_draws_the_four_levels(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "medmcqa"]) == 0
    drawn = capsys.readouterr().out
    for name in ("medmcqa", "scenarios", "private", "paraphrase", "inferdpt", "santext+"):
        assert name in drawn
