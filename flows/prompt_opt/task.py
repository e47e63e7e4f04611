"""The evaluation protocol: what the optimiser scores candidates on, and how.

A **candidate** is a dict of named text components (a system prompt, a tool description, a
few-shot block...). A **task** turns a candidate and a batch of rows into one ``Scored`` per
row: a score (1.0 meets every need), feedback in words for the reflector, and a trace of
what happened (a transcript, the input and the answer). Subclass ``Task`` and write
``evaluate``, or wrap a function in ``FunctionTask``::

    async def evaluate(candidate, rows):
        llm = LLMClient(LLMSettings(), name="assistant")
        out = []
        for row in rows:
            answer = await llm.chat(row["question"], system=candidate["system_prompt"])
            ok = row["answer"].lower() in answer.lower()
            out.append(Scored(score=float(ok), feedback="" if ok else f"Expected {row['answer']}"))
        return out

    optimize_prompt(task=FunctionTask(evaluate, calls_per_row=1), rows=rows, seeds=[...])

The optimiser runs each batch (``batch_size`` rows, default 1) as one checkpointed item, all
at once within the run's limits: LLM calls made through ``nodes.llm`` take the run's
limiters and are billed per client name. A task may instead provide its own evaluation
node or flow (``evaluation_node``), as the dummies conversation does to checkpoint every
turn.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field

import flowkit as fk
from flows.prompt_opt.scenario import PromptOptError
from nodes.llm import Bill, LLMError, LLMSettings, metered

if TYPE_CHECKING:
    from flows.prompt_opt.search import OptState

Candidate = Mapping[str, str]
"""Component name -> text."""


class Scored(BaseModel):
    """One row's outcome: its score, feedback for the reflector, a trace; or an error."""

    score: float = 0.0
    feedback: str = ""
    trace: str = ""
    error: str | None = Field(default=None, description="the evaluation failed (scores 0)")


def render(candidate: Candidate) -> str:
    """The components as one text (a system prompt): their texts, in order, a blank line
    between them."""
    return "\n\n".join(text.strip() for text in candidate.values() if text.strip()) + "\n"


class Task(ABC):
    """What the optimiser improves candidates on. Rows carry an ``id`` (attribute or key)."""

    noun: ClassVar[str] = "rows"
    """What the rows are called in messages."""
    unit: ClassVar[str] = "evaluation"
    """What one row's evaluation is called in the plan."""
    batch_size: int = 1

    def row_id(self, row: Any) -> str:
        rid = row.get("id") if isinstance(row, Mapping) else getattr(row, "id", None)
        if rid is None:
            raise PromptOptError(f"{self.noun}: a row has no 'id': {row!r:.80}")
        return str(rid)

    def row_data(self, row: Any) -> Any:
        """The row's content, as JSON-friendly data (part of each evaluation's key)."""
        return row.model_dump(mode="json") if isinstance(row, BaseModel) else row

    def check(self, rows: Sequence[Any]) -> None:  # noqa: B027 (optional)
        """Refuse rows the task cannot evaluate, before any call."""

    def roles(self) -> Mapping[str, LLMSettings]:
        """The LLM settings the task's calls use, by the name they are billed under."""
        return {}

    def calls_per_evaluation(self) -> int:
        """The most LLM calls one row's evaluation makes (for the budget plan)."""
        return 1

    def render(self, candidate: Candidate) -> str:
        return render(candidate)

    @abstractmethod
    async def evaluate(self, candidate: Candidate, rows: Sequence[Any]) -> Sequence[Scored]:
        """Score ``candidate`` on ``rows``: one ``Scored`` per row, in order."""

    def evaluation_node(self) -> fk.BaseNode:
        """The node that runs the optimiser's queued evaluations."""
        return EvaluateRows(self)


class FunctionTask(Task):
    """A task from an async function ``evaluate(candidate, rows) -> list[Scored]``."""

    def __init__(
        self,
        evaluate: Callable[[Candidate, Sequence[Any]], Awaitable[Sequence[Scored]]],
        *,
        calls_per_row: int = 1,
        batch_size: int = 1,
        roles: Mapping[str, LLMSettings] | None = None,
        noun: str = "rows",
    ) -> None:
        self._evaluate = evaluate
        self._calls = calls_per_row
        self.batch_size = batch_size
        self._roles = dict(roles or {})
        self.noun = noun  # type: ignore[misc]

    def roles(self) -> Mapping[str, LLMSettings]:
        return self._roles

    def calls_per_evaluation(self) -> int:
        return self._calls

    async def evaluate(self, candidate: Candidate, rows: Sequence[Any]) -> Sequence[Scored]:
        return await self._evaluate(candidate, rows)


@dataclass(frozen=True)
class RowBatch:
    """One exec item: a candidate and a batch of rows, with their evaluations' keys."""

    key: str
    candidate: dict[str, str]
    rows: tuple[Any, ...]
    evaluations: tuple[str, ...]


class Evaluated(BaseModel):
    """What one batch returned and what its calls billed, by client name."""

    scored: list[Scored] = []
    error: str | None = None
    bills: dict[str, Bill] = {}


class EvaluateRows(fk.AsyncParallelBatchNode):
    """Runs every queued evaluation of a function task, in batches, all at once."""

    on_error = "collect"

    def __init__(self, task: Task, **options: Any) -> None:
        options.setdefault("name", "Evaluate")
        super().__init__(**options)
        self.task = task

    def item_key(self, item: RowBatch) -> str:
        return item.key

    async def prep_async(self, shared: dict[str, Any]) -> list[RowBatch]:
        state: OptState = shared["state"]
        pool = state.pool
        batches: list[RowBatch] = []
        open_: dict[str, list[str]] = {}
        for key in pool.take_queue():
            ev = pool.evaluations[key]
            group = open_.setdefault(ev.candidate, [])
            group.append(key)
            if len(group) == self.task.batch_size:
                batches.append(self._batch(state, open_.pop(ev.candidate)))
        batches += [self._batch(state, keys) for keys in open_.values()]
        return batches

    def _batch(self, state: OptState, keys: list[str]) -> RowBatch:
        pool = state.pool
        first = pool.evaluations[keys[0]]
        rows = tuple(pool.rows[pool.evaluations[k].row] for k in keys)
        return RowBatch(
            ":".join(keys), pool.candidates[first.candidate].components, rows, tuple(keys)
        )

    async def exec_async(self, item: RowBatch) -> Evaluated:
        with metered() as bills:
            try:
                scored = list(await self.task.evaluate(item.candidate, list(item.rows)))
            except LLMError as exc:
                return Evaluated(error=f"{type(exc).__name__}: {exc}", bills=bills)
        if len(scored) != len(item.rows):
            raise PromptOptError(
                f"{type(self.task).__name__}.evaluate returned {len(scored)} results for "
                f"{len(item.rows)} rows; return one Scored per row, in order"
            )
        return Evaluated(scored=scored, bills=bills)

    async def post_async(
        self, shared: dict[str, Any], items: list[RowBatch], results: list[Any]
    ) -> None:
        state: OptState = shared["state"]
        pool = state.pool
        for item, result in zip(items, results, strict=True):
            if isinstance(result, fk.ErrorRecord):
                result = Evaluated(error=f"{result.error_type}: {result.message}")
            pool.charge_all(result.bills)
            for n, key in enumerate(item.evaluations):
                ev = pool.evaluations[key]
                if result.error is not None:
                    ev.error = result.error
                else:
                    scored = result.scored[n]
                    ev.score, ev.feedback, ev.trace = scored.score, scored.feedback, scored.trace
                    ev.error = scored.error
                ev.calls = sum(b.answered for b in result.bills.values())
                pool.finish(ev)
