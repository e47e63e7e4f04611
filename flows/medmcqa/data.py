"""MedMCQA questions: the loader for the real files and the bundled sample.

The files are JSON Lines (one object a line) or one JSON array, with the fields ``id``,
``question``, ``opa``..``opd``, ``cop`` (the correct option), ``choice_type``, ``exp``,
``subject_name`` and ``topic_name``. The original release numbers ``cop`` from 1, the
Hugging Face hub's copy from 0: say which with ``cop_base``. ``QuestionFile`` yields the
questions lazily; an unlabelled question (``cop < 0``, the test split) or a malformed line
is skipped and reported in ``problems`` with its line number, and the rest still load.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from flowkit.errors import FlowkitError

LETTERS = "ABCD"
CopBase = Literal[0, 1]


class DataError(FlowkitError, ValueError):
    """A questions file that cannot be read as asked (missing, or the wrong cop base)."""


class Question(BaseModel):
    """One multiple-choice question; ``answer`` is the 0-based index of the correct option."""

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    options: tuple[str, str, str, str]
    answer: int
    subject: str | None = None
    topic: str | None = None

    @property
    def letter(self) -> str:
        """The correct option's letter, A to D."""
        return LETTERS[self.answer]

    def options_text(self) -> str:
        """The options as lines ``A. ...`` to ``D. ...``."""
        return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(self.options))


class Problem(BaseModel):
    """A line that was skipped, and why."""

    line: int
    id: str | None
    reason: str


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | int
    question: str
    opa: str
    opb: str
    opc: str
    opd: str
    cop: int
    choice_type: str | None = None
    exp: str | None = None
    subject_name: str | None = None
    topic_name: str | None = None


def sample_path() -> Path:
    """The bundled sample: 64 questions written for flowkit, in the original (1-based) form."""
    return Path(str(files("flows.medmcqa").joinpath("sample.jsonl")))


class QuestionFile:
    """The labelled questions of a MedMCQA file, read lazily each time it is iterated.

    ``problems`` collects the lines skipped by the last pass: malformed JSON, missing or
    mistyped fields, unlabelled questions. A ``cop`` that contradicts ``cop_base`` (0 under
    base 1, 4 under base 0) raises ``DataError``: ``check`` finds one before work starts.
    """

    def __init__(self, path: str | Path, *, cop_base: CopBase = 1, limit: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"no questions file {self.path}: give --input an existing file")
        if cop_base not in (0, 1):
            raise DataError(f"cop_base must be 0 or 1, got {cop_base!r}")
        self.cop_base, self.limit = cop_base, limit
        self.problems: list[Problem] = []

    def _objects(self) -> Iterator[tuple[int, Any]]:
        """(line number, parsed value or the JSON error) for each record of the file."""
        with self.path.open(encoding="utf-8") as handle:
            first = ""
            for first in handle:
                if first.strip():
                    break
            handle.seek(0)
            if first.lstrip().startswith("["):
                try:
                    rows = json.load(handle)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{self.path}: not a JSON array ({exc})") from None
                for i, row in enumerate(rows):
                    yield i + 1, row
                return
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, exc

    def __iter__(self) -> Iterator[Question]:
        self.problems = []
        count = 0
        for number, raw in self._objects():
            if self.limit is not None and count >= self.limit:
                return
            question = self._question(number, raw)
            if question is not None:
                count += 1
                yield question

    def _question(self, number: int, raw: Any) -> Question | None:
        if isinstance(raw, json.JSONDecodeError):
            self._skip(number, None, f"malformed JSON: {raw.msg} at column {raw.colno}")
            return None
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        try:
            row = _Row.model_validate(raw)
        except ValidationError as exc:
            fields = ", ".join(".".join(map(str, e["loc"])) or "record" for e in exc.errors())
            self._skip(number, raw_id, f"missing or invalid field(s): {fields}")
            return None
        if row.cop < 0:
            self._skip(number, str(row.id), "unlabelled (cop < 0): nothing to score")
            return None
        answer = row.cop - self.cop_base
        if not 0 <= answer <= 3:
            raise DataError(self._contradiction(number, row.cop))
        return Question(
            id=str(row.id),
            question=row.question,
            options=(row.opa, row.opb, row.opc, row.opd),
            answer=answer,
            subject=row.subject_name,
            topic=row.topic_name,
        )

    def _skip(self, number: int, qid: Any, reason: str) -> None:
        self.problems.append(
            Problem(line=number, id=None if qid is None else str(qid), reason=reason)
        )

    def _contradiction(self, number: int, cop: int) -> str:
        other = 1 - self.cop_base
        return (
            f"{self.path} line {number}: cop {cop} is impossible with --cop-base "
            f"{self.cop_base} (options are {self.cop_base}..{self.cop_base + 3}); the file "
            f"looks {other}-based: pass --cop-base {other}"
        )

    def check(self) -> None:
        """Scan the whole file once (without keeping it) for a cop that contradicts the base."""
        for number, raw in self._objects():
            cop = raw.get("cop") if isinstance(raw, dict) else None
            if isinstance(cop, int) and cop >= 0 and not 0 <= cop - self.cop_base <= 3:
                raise DataError(self._contradiction(number, cop))
