"""Tasks other than the dummies conversation, and the train/validation/test splits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flows.prompt_opt import (
    DatasetRow,
    DatasetTask,
    FunctionTask,
    PromptOptConfig,
    PromptOptInputError,
    RoleSettings,
    Scored,
    llm_limits,
    load_dataset,
    make_splits,
    optimize_prompt,
)
from flows.prompt_opt.data import SAME_AS_TRAIN, parse_split

pytestmark = pytest.mark.filterwarnings("ignore:validation equals training")

ROWS = [
    {"id": "r1", "word": "allergies"},
    {"id": "r2", "word": "insurance"},
    {"id": "r3", "word": "parking"},
    {"id": "r4", "word": "allergies"},
]


def test_a_function_task_is_scored_in_batches_and_improved_from_its_feedback(
    offline: RoleSettings,
) -> None:
    batches: list[tuple[str, list[str]]] = []

    async def evaluate(candidate: Any, rows: Sequence[Any]) -> list[Scored]:
        text = candidate["system_prompt"].lower()
        batches.append((text, [r["id"] for r in rows]))
        return [
            Scored(score=1.0, trace=f"asked about {r['word']}")
            if f"mention {r['word']}" in text
            else Scored(score=0.0, feedback=f"The assistant should mention {r['word']}.")
            for r in rows
        ]

    task = FunctionTask(evaluate, batch_size=2)
    result = optimize_prompt(
        train=ROWS,
        task=task,
        seed_prompts=["Answer questions.\n"],
        settings=offline,
        runner=fk.Runner(limits=llm_limits(), progress=False),
    )
    assert result.best_score == 1.0 and result.seed_score == 0.0
    assert all(1 <= len(rows) <= 2 for _, rows in batches)
    assert set(result.calls) == {"reflect"}  # the task made no LLM call


def test_a_function_task_that_returns_the_wrong_count_fails_its_evaluations(
    offline: RoleSettings,
) -> None:
    async def evaluate(candidate: Any, rows: Sequence[Any]) -> list[Scored]:
        return []

    config = PromptOptConfig(generations=1, budget=None, max_consecutive_failures=100)
    result = optimize_prompt(
        train=ROWS, task=FunctionTask(evaluate), settings=offline, config=config
    )
    seed = result.candidates[0]
    assert seed.failures == len(ROWS)
    assert "returned 0 results for 1 rows" in next(iter(seed.errors.values()))


def _dataset(path: Path) -> Path:
    rows = [
        {
            "id": "fr",
            "question": "Capital of France?",
            "answer": "Paris",
            "instruction": "answer with the capital city only",
        },
        {
            "id": "de",
            "question": "Capital of Germany?",
            "answer": "Berlin",
            "instruction": "answer with the capital city only",
        },
        {
            "id": "two",
            "input": "1 + 1?",
            "expected": "2",
            "instruction": "answer sums with a digit",
        },
        {
            "id": "three",
            "input": "1 + 2?",
            "output": "3",
            "instruction": "answer sums with a digit",
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("metric", ["exact", "contains", "judge"])
def test_a_dataset_with_a_metric_is_a_task(
    offline: RoleSettings, tmp_path: Path, metric: str
) -> None:
    rows = load_dataset(_dataset(tmp_path / "qa.jsonl"))
    assert [r.id for r in rows] == ["fr", "de", "two", "three"] and rows[2].answer == "2"
    result = optimize_prompt(
        train=rows,
        task=DatasetTask(metric, offline),  # type: ignore[arg-type]
        settings=offline,
        runner=fk.Runner(limits=llm_limits(), progress=False),
    )
    assert result.seed_score == 0.0 and result.best_score == 1.0
    roles = {"assistant", "reflect"} | ({"judge"} if metric == "judge" else set())
    assert set(result.calls) == roles


def test_dataset_files_are_checked_line_by_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "x", "answer": "y"}\n{"input": "no answer"}\n')
    with pytest.raises(PromptOptInputError, match="line 2: needs 'input' and 'answer'"):
        load_dataset(bad)
    with pytest.raises(PromptOptInputError, match="unknown metric"):
        DatasetTask("fuzzy")  # type: ignore[arg-type]


def test_one_set_is_split_by_shares_with_the_seed() -> None:
    rows = [DatasetRow(id=f"r{n}", input="q", answer="a") for n in range(10)]
    parts = make_splits(rows, split=parse_split("0.4,0.3,0.3"), seed=3, row_id=lambda r: r.id)
    sizes = (len(parts.train), len(parts.val), len(parts.test))
    assert sizes == (4, 3, 3)
    ids = [r.id for part in (parts.train, parts.val, parts.test) for r in part]
    assert sorted(ids) == sorted(r.id for r in rows)
    assert parts.how == "10 rows split with seed 3: 4 training, 3 validation, 3 test"
    again = make_splits(rows, split=parse_split("0.4,0.3,0.3"), seed=3, row_id=lambda r: r.id)
    assert again == parts
    with pytest.raises(PromptOptInputError, match="TRAIN,VAL"):
        parse_split("half")


def test_validation_equal_to_training_is_warned_and_a_leaked_test_row_too() -> None:
    rows = [{"id": "a"}, {"id": "b"}]
    given = make_splits(train=rows, val=list(reversed(rows)), row_id=lambda r: r["id"])
    assert SAME_AS_TRAIN in given.warnings
    whole = make_splits(rows, split=None, row_id=lambda r: r["id"])
    assert whole.train == whole.val and SAME_AS_TRAIN in whole.warnings
    leaked = make_splits(train=rows[:1], val=rows[1:], test=rows[:1], row_id=lambda r: r["id"])
    assert any("not a held-out measure" in w for w in leaked.warnings)
    with pytest.raises(PromptOptInputError, match="share an id"):
        make_splits([{"id": "x"}, {"id": "X"}], row_id=lambda r: r["id"])
