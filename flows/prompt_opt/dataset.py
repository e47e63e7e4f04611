"""A plain dataset as a task: the assistant answers each row's input, a metric scores it.

A dataset file is JSON lines, one row each::

    {"id": "q1", "input": "What is the capital of France?", "answer": "Paris"}

(``question`` is read as ``input``, ``output``/``expected`` as ``answer``; rows without an
``id`` are named ``row-1``, ``row-2``...). Metrics: ``exact`` (the reply equals the answer,
ignoring case, spaces and end punctuation), ``contains`` (the reply contains the answer),
``judge`` (an LLM judge scores the reply against the answer, 0 to 1, with feedback). The
feedback for a miss names the expected answer, so the reflector can learn from it.

Offline (the simulated provider), a row may carry an ``instruction``: the simulated
assistant answers right only when the system prompt contains it, and the feedback for a
miss says "The assistant should <instruction>.", which the simulated reflector adds.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.prompt_opt.prompts import Verdict
from flows.prompt_opt.scenario import PromptOptInputError
from flows.prompt_opt.task import Candidate, Scored, Task
from nodes.llm import LLMClient, LLMError, LLMSettings

Metric = Literal["exact", "contains", "judge"]
METRICS: tuple[Metric, ...] = ("exact", "contains", "judge")

JUDGE_SYSTEM = "You grade answers against a reference answer. Be strict and concrete."
JUDGE_REQUEST = """\
Question: {input}
Reference answer: {answer}
The assistant's answer: {reply}

Score the assistant's answer from 0 (wrong) to 1 (fully right, as the reference). In the \
feedback, say what is wrong and what the assistant should do instead."""


class DatasetRow(BaseModel):
    """One row: the input, the expected answer, and (offline only) an instruction."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1)
    input: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    instruction: str | None = None


def load_dataset(path: str | Path) -> list[DatasetRow]:
    """The rows of a JSON-lines file (see the module's docstring)."""
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise PromptOptInputError(f"cannot read dataset {source}: {exc.strerror}") from None
    rows: list[DatasetRow] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptOptInputError(f"dataset {source}, line {n}: not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise PromptOptInputError(f"dataset {source}, line {n}: expected a JSON object")
        data = {
            "id": str(data.get("id", f"row-{len(rows) + 1}")),
            "input": data.get("input", data.get("question")),
            "answer": data.get("answer", data.get("output", data.get("expected"))),
            "instruction": data.get("instruction"),
        }
        try:
            rows.append(DatasetRow.model_validate(data))
        except ValidationError as exc:
            raise PromptOptInputError(
                f"dataset {source}, line {n}: needs 'input' and 'answer' text ({exc.error_count()} "
                "problem(s))"
            ) from None
    if not rows:
        raise PromptOptInputError(f"dataset {source} holds no rows")
    return rows


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).strip(" .!?\"'")


class DatasetTask(Task):
    """Answer each row with the candidate as the system prompt; score with ``metric``."""

    noun = "rows"
    unit = "answer"

    def __init__(self, metric: Metric = "exact", settings: Mapping[str, LLMSettings] | None = None):
        if metric not in METRICS:
            raise PromptOptInputError(f"unknown metric {metric!r}; choose {', '.join(METRICS)}")
        self.metric = metric
        given = dict(settings or {})
        self.settings = {"assistant": given.get("assistant") or LLMSettings()}
        if metric == "judge":
            self.settings["judge"] = given.get("judge") or LLMSettings()

    def check(self, rows: Sequence[Any]) -> None:
        for row in rows:
            if not isinstance(row, DatasetRow):
                raise PromptOptInputError(
                    f"the dataset task needs DatasetRow rows, got {row!r:.60}"
                )

    def roles(self) -> Mapping[str, LLMSettings]:
        return dict(self.settings)

    def calls_per_evaluation(self) -> int:
        return 2 if self.metric == "judge" else 1

    async def evaluate(self, candidate: Candidate, rows: Sequence[Any]) -> list[Scored]:
        clients = {role: LLMClient(s, name=role) for role, s in self.settings.items()}
        system = self.render(candidate)
        return list(await asyncio.gather(*(self.score(row, system, clients) for row in rows)))

    async def score(self, row: DatasetRow, system: str, clients: Mapping[str, LLMClient]) -> Scored:
        try:
            reply = await clients["assistant"].chat(
                row.input, system=system, simulate=lambda: simulated_answer(row, system)
            )
            if self.metric == "judge":
                verdict = await clients["judge"].parse(
                    JUDGE_REQUEST.format(input=row.input, answer=row.answer, reply=reply),
                    Verdict,
                    system=JUDGE_SYSTEM,
                    simulate=lambda: simulated_verdict(row, reply).model_dump_json(),
                )
                score, feedback = verdict.score, verdict.feedback
            else:
                score = float(self.matches(reply, row.answer))
                feedback = miss_feedback(row, reply) if score < 1 else "Correct."
        except LLMError as exc:
            return Scored(trace=f"Input: {row.input}", error=f"{type(exc).__name__}: {exc}")
        return Scored(score=score, feedback=feedback, trace=f"Input: {row.input}\nAnswer: {reply}")

    def matches(self, reply: str, answer: str) -> bool:
        if self.metric == "exact":
            return normalise(reply) == normalise(answer)
        return normalise(answer) in normalise(reply)


def miss_feedback(row: DatasetRow, reply: str) -> str:
    text = f"Expected {row.answer!r}; got {reply.strip()!r:.200}."
    if row.instruction:
        text += f" The assistant should {row.instruction.rstrip('.')}."
    return text


def simulated_answer(row: DatasetRow, system: str) -> str:
    """Offline: the right answer when the prompt holds the row's instruction, else a guess."""
    if row.instruction and row.instruction.lower().rstrip(".") in system.lower():
        return row.answer
    return "I am not sure."


def simulated_verdict(row: DatasetRow, reply: str) -> Verdict:
    ok = normalise(row.answer) in normalise(reply)
    return Verdict(
        score=1.0 if ok else 0.0, feedback="Correct." if ok else miss_feedback(row, reply)
    )
