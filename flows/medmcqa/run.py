"""Running the experiment from Python: ``run_experiment`` and the files it writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flowkit as fk
from flowkit.files import ensure_dir, write_text
from flows.medmcqa.data import Question
from flows.medmcqa.experiment import (
    DEFAULT_EPSILONS,
    Experiment,
    ExperimentError,
    MechanismOptions,
)
from flows.medmcqa.flow import build_flow
from flows.medmcqa.privacy import Embedder, HashedEmbedder, Variant, word_counts
from flows.medmcqa.simulate import SimulatedModels
from flows.medmcqa.table import DEFAULT_SCENARIOS, AccuracyTable
from nodes.llm import LLMSettings

DEFAULT_LIMITS = {"local": fk.Limit(max_concurrency=8), "remote": fk.Limit(max_concurrency=16)}
"""The limits ``run_experiment`` (and ``flowkit run medmcqa``) use unless told otherwise."""


def hashed_embedder(questions: Iterable[Question], *, dim: int = 64) -> HashedEmbedder:
    """The offline embedder over the words of ``questions`` (read once, only words kept)."""
    return HashedEmbedder((q.question for q in questions), dim=dim)


def corpus_counts(questions: Iterable[Question]) -> dict[str, int]:
    """Word counts of the questions' texts: the corpus SANTEXT+ and CusText+ rank words by."""
    return dict(word_counts(q.question for q in questions))


def write_outputs(table: AccuracyTable, output: str | Path, *, plot: bool = True) -> list[Path]:
    """accuracy.csv, accuracy.md and (with matplotlib) accuracy.png under ``output``."""
    out = Path(output)
    ensure_dir(out.resolve())  # the folder given is trusted; links planted in it are not
    written = [out / "accuracy.csv", out / "accuracy.md"]
    write_text(written[0], table.to_csv())
    write_text(written[1], table.to_markdown())
    if plot:
        table.plot(out / "accuracy.png")
        written.append(out / "accuracy.png")
    return written


def run_experiment(
    questions: Iterable[Question],
    output: str | Path,
    *,
    local: LLMSettings | None = None,
    remote: LLMSettings | None = None,
    embedder: Embedder | None = None,
    epsilons: Sequence[float] = DEFAULT_EPSILONS,
    scenarios: Sequence[str] = DEFAULT_SCENARIOS,
    seed: int = 0,
    variant: Variant = "reference",
    options: MechanismOptions | None = None,
    corpus: Mapping[str, int] | None = None,
    runner: fk.Runner | None = None,
    question_concurrency: int = 64,
    plot: bool = True,
) -> AccuracyTable:
    """Run the experiment over ``questions`` and return the accuracy table.

    Writes ``results.jsonl``, ``accuracy.csv``, ``accuracy.md`` and ``accuracy.png`` (when
    ``plot``) under ``output``. ``questions`` is read lazily by the flow; the corpus's word
    counts (``corpus``, SANTEXT+'s and CusText+'s frequencies) and the default embedder read
    it once more before, so without both it must be re-iterable (a QuestionFile, a list).
    Settings default to the simulated provider on the ``local`` and
    ``remote`` limiters (simulated with ``seed``), the embedder to
    ``hashed_embedder(questions)``, the DP variant to ``reference``, the mechanisms'
    options to ``MechanismOptions()``, the runner to ``DEFAULT_LIMITS`` with its report in
    ``output/report``.
    """
    if (embedder is None or corpus is None) and iter(questions) is questions:
        raise ExperimentError(
            "run_experiment reads the questions twice (the corpus's word counts and the "
            "offline embedder, then the run): pass a QuestionFile or a list, not a one-shot "
            "iterator, or give both embedder= and corpus="
        )
    local = local or LLMSettings(provider="simulated", model="local-sim", limiter="local")
    remote = remote or LLMSettings(provider="simulated", model="remote-sim", limiter="remote")
    experiment = Experiment(
        local,
        remote,
        embedder if embedder is not None else hashed_embedder(questions),
        tuple(epsilons),
        tuple(scenarios),
        seed,
        simulator=SimulatedModels(seed=seed),
        variant=variant,
        options=options or MechanismOptions(),
        corpus=corpus if corpus is not None else corpus_counts(questions),
    )
    flow = build_flow(experiment, question_concurrency=question_concurrency)
    shared: dict[str, Any] = {"questions": questions, "output": Path(output)}
    runner = runner or fk.Runner(limits=DEFAULT_LIMITS, report=Path(output) / "report")
    runner.run(flow, shared)
    table: AccuracyTable = shared["table"]
    write_outputs(table, output, plot=plot)
    return table
