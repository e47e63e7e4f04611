"""The local side answered by a ``nodes.models`` generator instead of an endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import flowkit as fk
from flows.medmcqa import Experiment, QuestionFile, build_flow, hashed_embedder, sample_path
from nodes.llm import LLMSettings, Simulation
from nodes.models import TextGenerator, build_tiny_causal_lm


def test_a_local_generator_answers_under_the_local_limit(tmp_path: Path) -> None:
    model = build_tiny_causal_lm(tmp_path / "tiny")
    questions = list(QuestionFile(sample_path(), limit=3))
    fast = Simulation(latency_s=0.0)
    tiny = TextGenerator(str(model), max_new_tokens=4)  # 256 positions: prompts are cut
    experiment = Experiment(
        LLMSettings(provider="simulated", limiter="local", simulation=fast),
        LLMSettings(provider="simulated", limiter="remote", simulation=fast),
        hashed_embedder(questions),
        epsilons=(1.0,),
        scenarios=("1", "2", "3.0"),
        local_generator=lambda prompts: tiny([p[-200:] for p in prompts]),
    )
    runner = fk.Runner(
        limits={"local": fk.Limit(max_concurrency=2), "remote": fk.Limit(max_concurrency=4)}
    )
    shared = {"questions": questions, "output": tmp_path / "out"}
    runner.run(build_flow(experiment), shared)
    cells = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(cells) == 3 * 3
    answered = [c for c in cells if c["scenario"] in ("1", "2")]
    assert all(c["error"] is None and c["calls"] >= 1 for c in answered)
    # the tiny model's completions are noise: PhraseDP may find no paraphrase, and says so
    assert all(c["error"] is None or "no usable paraphrase" in c["error"] for c in cells)
    assert runner.last_run is not None
    local = runner.last_run.limiters["local"]
    # scenario 1 and 2 answers, three paraphrase bands per question, PhraseDP answers
    phrasedp_answers = sum(c["calls"] for c in cells if c["scenario"] == "3.0") // 2
    assert local.calls == 3 + 3 + 3 * 3 + phrasedp_answers
    assert local.peak_in_flight <= 2
