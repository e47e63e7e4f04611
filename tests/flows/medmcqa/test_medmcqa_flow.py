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
    SCENARIOS,
    Experiment,
    ExperimentError,
    MechanismOptions,
    QuestionFile,
    SimulatedModels,
    build_flow,
    hashed_embedder,
    run_experiment,
    sample_path,
)
from flows.medmcqa.data import Question
from flows.medmcqa.run import corpus_counts
from flows.medmcqa.table import MECHANISMS
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
        scenarios=SCENARIOS,
        runner=runner,
    )
    return out, table


PRIVATE = ("3.0", "3.2", "3.3", "3.4", "3.5")


def test_every_cell_of_every_question_is_written_once(full_run: tuple[Path, Any]) -> None:
    out, _ = full_run
    cells = lines(out / "results.jsonl")
    n = len(list(QuestionFile(sample_path())))
    assert len(cells) == n * (3 + 5 * 3)
    per = Counter((c["scenario"], c["epsilon"]) for c in cells)
    # the ε-independent scenarios ran once per question, the private ones once per ε
    assert per[("1", None)] == per[("2", None)] == per[("4", None)] == n
    assert all(per[(s, e)] == n for s in PRIVATE for e in (1.0, 2.0, 3.0))
    assert {c["error"] for c in cells} == {None}
    private = [c for c in cells if c["scenario"].startswith("3.")]
    assert all(c["sanitised"] and c["cot"] and c["answer"] in "ABCD" for c in private)
    assert all(c["calls"] == 2 and c["tokens"] > 0 for c in private)
    assert all(c["variant"] == "reference" and 0 <= c["kept"] <= c["words"] for c in private)
    assert {(c["scenario"], c["mechanism"]) for c in private} == set(MECHANISMS.items())


def test_the_offline_table_keeps_the_expected_shape(full_run: tuple[Path, Any]) -> None:
    """4 >= 2 >= the private scenarios on average >= 1, and each mechanism does not get
    worse as ε grows, beyond its confidence interval."""
    _, table = full_run

    def acc(scenario: str, eps: float | None = None) -> float:
        value = table.get(scenario, eps).accuracy
        assert value is not None
        return float(value)

    mean = {s: statistics.fmean(acc(s, e) for e in (1.0, 2.0, 3.0)) for s in PRIVATE}
    assert acc("4") >= acc("2") >= statistics.fmean(mean.values()) >= acc("1")
    for s in PRIVATE:
        assert table.get("1").interval[0] <= mean[s] <= table.get("2").interval[1], s
        for low, high in ((1.0, 2.0), (2.0, 3.0), (1.0, 3.0)):
            assert acc(s, low) <= table.get(s, high).interval[1], (s, low, high)
    assert acc("3.2", 1.0) < acc("3.2", 3.0)  # InferDPT: Δ/ε noise at 1, Δ/tt(3) at 3


def test_the_privacy_table_states_each_bound_and_the_words_kept(
    full_run: tuple[Path, Any],
) -> None:
    out, table = full_run
    md = (out / "accuracy.md").read_text()
    assert md.startswith("DP variant: reference")
    rows = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[1] == "reference":
            rows[(cells[0], cells[2])] = cells[3]
    assert len(rows) == 5 * 3
    assert "4ε = 12" in rows[("3.0 PhraseDP", "3")]
    assert "Δ/9.12" in rows[("3.2 InferDPT", "2")] and "Δ/1.00" in rows[("3.2 InferDPT", "1")]
    assert "3·d + 1.20" in rows[("3.3 SANTEXT+", "3")]
    assert "within a cluster of 20" in rows[("3.4 CusText+", "1")]
    assert "twice the paper's" in rows[("3.5 CluSanT", "2")]
    inferdpt = [table.get("3.2", e).kept_share for e in (1.0, 2.0, 3.0)]
    assert inferdpt[0] < 0.02 and inferdpt[1] > 0.85 and inferdpt[2] > 0.85
    kept = {
        row["scenario"] + "@" + row["epsilon"]: row
        for row in csv.DictReader((out / "accuracy.csv").open())
    }
    assert kept["3.2@2"]["variant"] == "reference" and float(kept["3.2@2"]["words_kept"]) > 0.85
    assert kept["1@"]["variant"] == "" and kept["1@"]["words_kept"] == ""


def test_outputs_hold_the_table_with_intervals_and_a_plot(full_run: tuple[Path, Any]) -> None:
    out, _ = full_run
    rows = list(csv.DictReader((out / "accuracy.csv").open()))
    assert len(rows) == 3 + 5 * 3
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
    options.setdefault("corpus", corpus_counts(questions))
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


def test_a_changed_setting_reruns_exactly_the_cells_it_affects(tmp_path: Path) -> None:
    """Seed, DP variant, mechanism options and model names are part of each cell's key: a
    resumed run reruns the cells they decide and reuses the others."""
    store = tmp_path / "runs.db"
    first, _ = run(small_experiment(SimulatedModels(), seed=1), tmp_path / "a", store=store)
    assert first.last_run is not None
    run_id = first.last_run.run_id
    per_question = {"non-private": 3, "paraphrase": 3, "private": 9}

    def resumed(name: str, experiment: Experiment) -> tuple[int, dict[str, Any]]:
        again, shared = run(experiment, tmp_path / name, store=store, resume=run_id)
        assert again.last_run is not None
        return again.last_run.resumed, shared

    # seed 2: the sanitisers' draws change; scenarios 1, 2, 4 and the paraphrases do not
    count, shared = resumed("seed", small_experiment(SimulatedModels(), seed=2))
    assert count == 4 * (per_question["non-private"] + per_question["paraphrase"])
    _, fresh = run(small_experiment(SimulatedModels(), seed=2), tmp_path / "fresh")
    assert shared["table"].to_csv() == fresh["table"].to_csv()
    # the same seed again: everything is reused
    assert resumed("same", small_experiment(SimulatedModels(), seed=1))[0] == 4 * 15
    # the strict variant, or other SANTEXT+ options: only the private cells (options: 3.3)
    assert (
        resumed("strict", small_experiment(SimulatedModels(), seed=1, variant="strict"))[0] == 4 * 6
    )
    options = MechanismOptions(santext_p=0.2)
    assert resumed("p", small_experiment(SimulatedModels(), seed=1, options=options))[0] == 4 * (
        15 - 3
    )
    # another remote model: all but scenario 1 and the paraphrases (the local side)
    other = small_experiment(SimulatedModels(), seed=1)
    other.remote = other.remote.model_copy(update={"model": "remote-2"})
    assert resumed("remote", other)[0] == 4 * (1 + 3)


def test_resuming_from_the_shell_with_another_seed_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def flowkit_run(out: str, *extra: str) -> int:
        args = ["run", "medmcqa", "--limit", "4", "--output", str(tmp_path / out), "--no-progress"]
        return main([*args, "--store", str(tmp_path / "runs.db"), *extra])

    assert flowkit_run("one", "--seed", "1", "--run-id", "seed-one") == 0
    capsys.readouterr()
    assert flowkit_run("two", "--seed", "2", "--resume", "seed-one") != 0
    err = capsys.readouterr().err
    assert "cannot resume run 'seed-one'" in err and "--seed 1 then, 2 now" in err
    assert not (tmp_path / "two" / "results.jsonl").exists()  # refused before any work
    # the same settings resume, whatever folder the outputs go to
    assert flowkit_run("three", "--seed", "1", "--resume", "seed-one") == 0
    assert (tmp_path / "three" / "accuracy.csv").read_text() == (
        tmp_path / "one" / "accuracy.csv"
    ).read_text()


def test_optional_scenarios_and_the_strict_variant_are_recorded(tmp_path: Path) -> None:
    _, shared = run(
        small_experiment(SimulatedModels(), scenarios=("1", "3.4", "3.5"), variant="strict"),
        tmp_path,
    )
    cells = lines(tmp_path / "results.jsonl")
    assert Counter(c["mechanism"] for c in cells) == {None: 4, "custext+": 12, "clusant": 12}
    private = [c for c in cells if c["mechanism"]]
    assert {c["variant"] for c in private} == {"strict"}
    assert all(c["words"] and c["kept"] is not None for c in private)
    md = shared["table"].to_markdown()
    assert md.startswith("DP variant: strict")
    assert "| 3.4 CusText+ | strict | 1 | ε = 1 within a cluster of 20" in md
    assert "| 3.5 CluSanT | strict | 3 | 1.5·(D(Cx,Cx') + d(x,x')/Δ), the paper's ε-MLDP" in md


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
        (["--dp-variant", "loose"], "invalid choice: 'loose'"),
        (["--santext-p", "1.5"], "--santext-p"),
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


def test_a_one_shot_iterator_needs_the_embedder_and_the_corpus_given(tmp_path: Path) -> None:
    questions = list(QuestionFile(sample_path(), limit=3))
    fast = {"local": settings("local"), "remote": settings("remote"), "plot": False}
    with pytest.raises(ExperimentError, match="corpus="):
        run_experiment(iter(questions), tmp_path, embedder=hashed_embedder(questions), **fast)
    table = run_experiment(
        iter(questions),
        tmp_path,
        embedder=hashed_embedder(questions),
        corpus=corpus_counts(questions),
        scenarios=("1", "3.3"),
        **fast,
    )
    assert table.get("3.3", 2.0).n == 3 and table.get("3.3", 2.0).words > 0
