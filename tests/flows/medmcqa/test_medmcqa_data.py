"""The MedMCQA loader: both cop bases, unlabelled rows, malformed lines, the sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.medmcqa import DataError, QuestionFile, sample_path


def row(qid: str, cop: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": qid,
        "question": f"Question {qid}?",
        "opa": "alpha",
        "opb": "beta",
        "opc": "gamma",
        "opd": "delta",
        "cop": cop,
        "choice_type": "single",
        "exp": None,
        "subject_name": "Medicine",
        "topic_name": None,
        **extra,
    }


def write_lines(path: Path, *lines: Any) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_original_release_is_one_based(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "dev.jsonl", row("a", 1), row("b", 4))
    questions = list(QuestionFile(path, cop_base=1))
    assert [(q.id, q.letter) for q in questions] == [("a", "A"), ("b", "D")]
    assert questions[1].options == ("alpha", "beta", "gamma", "delta")
    assert questions[0].subject == "Medicine"


def test_hub_copy_is_zero_based_and_may_be_a_json_array(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps([row("a", 0), row("b", 3)]))
    assert [q.letter for q in QuestionFile(path, cop_base=0)] == ["A", "D"]


@pytest.mark.parametrize(("base", "cop", "hint"), [(1, 0, "--cop-base 0"), (0, 4, "--cop-base 1")])
def test_a_cop_that_contradicts_the_base_is_refused_naming_the_fix(
    tmp_path: Path, base: int, cop: int, hint: str
) -> None:
    path = write_lines(tmp_path / "dev.jsonl", row("a", 2), row("b", cop))
    questions = QuestionFile(path, cop_base=base)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=f"line 2: cop {cop} .*{hint}"):
        questions.check()
    with pytest.raises(DataError, match=hint):
        list(questions)


def test_unlabelled_and_malformed_lines_are_reported_and_the_rest_load(tmp_path: Path) -> None:
    broken = {k: v for k, v in row("c", 2).items() if k != "opc"}
    path = write_lines(
        tmp_path / "test.jsonl",
        row("a", 1),
        row("u", -1),
        '{"id": "x", "question": ',
        broken,
        "",
        row("b", 3),
    )
    questions = QuestionFile(path)
    questions.check()
    assert [q.id for q in questions] == ["a", "b"]
    assert [(p.line, p.id) for p in questions.problems] == [(2, "u"), (3, None), (4, "c")]
    assert "unlabelled" in questions.problems[0].reason
    assert "malformed JSON" in questions.problems[1].reason
    assert "opc" in questions.problems[2].reason


def test_questions_are_read_lazily_and_limit_stops_early(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "dev.jsonl", *(row(str(i), 1 + i % 4) for i in range(50)))
    it = iter(QuestionFile(path))
    assert next(it).id == "0"  # a generator: nothing else was parsed yet
    assert [q.id for q in QuestionFile(path, limit=3)] == ["0", "1", "2"]


def test_a_missing_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--input"):
        QuestionFile(tmp_path / "nope.jsonl")


def test_the_bundled_sample_has_sixty_labelled_questions_or_more() -> None:
    questions = QuestionFile(sample_path(), cop_base=1)
    questions.check()
    loaded = list(questions)
    assert len(loaded) >= 60 and not questions.problems
    assert len({q.id for q in loaded}) == len(loaded)
    assert {q.letter for q in loaded} == {"A", "B", "C", "D"}
