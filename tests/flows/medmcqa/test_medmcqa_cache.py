"""The experiment with a cache across runs: one more ε computes only the new cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flowkit as fk
from flowkit.cli import main
from flows.medmcqa import DEFAULT_LIMITS, QuestionFile, run_experiment, sample_path
from nodes.llm import LLMSettings, Simulation

FAST = Simulation(latency_s=0.0)


def settings(role: str) -> LLMSettings:
    return LLMSettings(provider="simulated", model=f"{role}-sim", limiter=role, simulation=FAST)


def experiment(out: Path, epsilons: tuple[float, ...], **runner: Any) -> tuple[fk.RunInfo, Any]:
    engine = fk.Runner(limits=DEFAULT_LIMITS, detect_blocking=None, **runner)
    table = run_experiment(
        QuestionFile(sample_path(), limit=4),
        out,
        local=settings("local"),
        remote=settings("remote"),
        epsilons=epsilons,
        runner=engine,
        plot=False,
    )
    assert engine.last_run is not None
    return engine.last_run, table


def calls(info: fk.RunInfo) -> int:
    return sum(stats.calls for stats in info.limiters.values())


def test_one_more_epsilon_computes_only_the_new_cells_under_a_new_run_id(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    first, _ = experiment(tmp_path / "a", (1.0, 2.0), cache=cache)
    later, table = experiment(tmp_path / "b", (1.0, 2.0, 3.0), cache=cache)
    assert later.run_id != first.run_id
    # per question: 1, 2, 4 and the 3 paraphrase bands, then 3 mechanisms x 2 ε, all reused
    assert later.cached == 4 * (3 + 3 + 3 * 2)
    # the new cells only: 3 mechanisms x ε = 3 for 4 questions, a CoT and an answer each
    assert calls(later) == 4 * 3 * 2
    clean, fresh = experiment(tmp_path / "c", (1.0, 2.0, 3.0))
    assert calls(clean) > calls(later) and clean.cached == 0
    assert table.to_csv() == fresh.to_csv()


def test_flowkit_run_medmcqa_cache_reuses_cells_from_the_shell(tmp_path: Path, capsys: Any) -> None:
    def flowkit_run(out: str, epsilons: str) -> int:
        return main(
            [
                *("run", "medmcqa", "--limit", "2", "--no-progress", "--no-store"),
                *("--epsilons", epsilons, "--output", str(tmp_path / out)),
                *("--cache", str(tmp_path / "cache.db")),
            ]
        )

    assert flowkit_run("one", "1") == 0
    capsys.readouterr()
    assert flowkit_run("two", "1,2") == 0
    assert "(18 from the cache)" in capsys.readouterr().out  # 2 x (3 + 3 paraphrases + 3)
