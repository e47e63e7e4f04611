"""The MedMCQA privacy experiment as one flowkit graph, parallel at four levels.

``QuestionsFlow`` fans out over the questions (an AsyncParallelBatchFlow pulling them
lazily). Each question's flow is a ``Parallel`` of the scenario branches: 1 (local), 2
(local + remote CoT), 4 (remote) and the private branch, itself a ``Parallel`` of the
sanitisers (3.0, 3.2 and 3.3 by default; 3.4 and 3.5 on request), each a parallel batch over
the ε values. Every LLM call draws on the ``local``
or ``remote`` limiter, shared by every question, scenario, mechanism and ε at once: those
limits, not the graph's shape, decide how much runs.

One cell (a scenario x mechanism x ε of one question) is one item: it is checkpointed on
its own, under a key that holds a digest of every setting it depends on, and a failure
becomes an error record in ``results.jsonl`` and the table while the other cells go on.
Cells and paraphrases are cached under the same keys (``flowkit run medmcqa --cache``): a
rerun with one more ε computes only the new cells, even under a new run id.
The node classes are the building blocks to subclass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flowkit as fk
from flowkit.errors import FlowkitError
from flows.medmcqa.data import Question
from flows.medmcqa.experiment import (
    DEFAULT_EPSILONS,
    Experiment,
    ExperimentError,
    Job,
    MechanismOptions,
    check_epsilons,
    check_scenarios,
)
from flows.medmcqa.privacy import BANDS, PhraseDP, Sanitised, WordMechanism, clean_candidates
from flows.medmcqa.privacy.phrasedp import kept_words
from flows.medmcqa.prompts import (
    ANSWER_SYSTEM,
    COT_SYSTEM,
    PARAPHRASE_SYSTEM,
    Paraphrases,
    answer_prompt,
    cot_prompt,
    paraphrases_in,
    parse_answer,
)
from flows.medmcqa.simulate import Role
from flows.medmcqa.table import MECHANISMS, Cell, ResultSink
from nodes.llm import LLMClient

__all__ = [
    "DEFAULT_EPSILONS",
    "CellNode",
    "CoTAnswer",
    "Experiment",
    "ExperimentError",
    "Job",
    "LocalAnswer",
    "MechanismOptions",
    "NoCandidatesError",
    "Paraphrase",
    "PhraseDPCells",
    "PrivateCells",
    "QuestionsFlow",
    "RemoteAnswer",
    "Tally",
    "build_flow",
    "check_epsilons",
    "check_scenarios",
]


class NoCandidatesError(FlowkitError, RuntimeError):
    """PhraseDP had no paraphrase to choose from for a question."""


async def generate(generator: Callable[[Sequence[str]], list[str]], text: str, limiter: str) -> str:
    """One completion from a local model, in a thread, holding a slot of ``limiter``."""
    slot = fk.current_limiter(limiter)
    if slot is not None:
        waited = await slot.acquire()
        if waited > 0:
            fk.record_usage(limiter_wait_s=waited)
    started = time.monotonic()
    try:
        (reply,) = await fk.to_thread(generator, [text], cpu_bound=True)
    finally:
        if slot is not None:
            slot.release()
    fk.record_usage(calls=1, latency_s=time.monotonic() - started)
    return reply


def estimate_tokens(text: str) -> int:
    """About four characters a token: the cells' token counts are estimates."""
    return -(-len(text) // 4)


@dataclass
class Tally:
    """Calls and (estimated) tokens of one cell."""

    calls: int = 0
    tokens: int = 0


class ExperimentNode(fk.AsyncParallelBatchNode):
    """A parallel batch node with the experiment, its two LLM clients and the question.
    Its results are cached (with ``Runner(cache=...)``) under its item keys, which hold a
    digest of every setting a result depends on."""

    on_error = "collect"
    cache = True

    def __init__(self, experiment: Experiment, **options: Any) -> None:
        super().__init__(**options)
        self.experiment = experiment
        self._clients: dict[str, LLMClient] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_clients": {}}

    def client(self, role: Role) -> LLMClient:
        """The LLM client of ``role``; its errors name this node."""
        found = self._clients.get(role)
        if found is None or found.name != self.name:
            found = self._clients[role] = LLMClient(self.experiment.settings(role), name=self.name)
        return found

    def question(self) -> Question:
        """The question this copy of the node works on (from the flow's params)."""
        return Question.model_validate(self.params["question"])

    async def ask(
        self, role: Role, tally: Tally, prompt: str, system: str, simulate: Callable[[], str]
    ) -> str:
        """One chat call on ``role``'s model, counted in ``tally``."""
        generator = self.experiment.local_generator
        if role == "local" and generator is not None:
            reply = await generate(
                generator, f"{system}\n\n{prompt}", self.experiment.local.limiter
            )
        else:
            reply = await self.client(role).chat(prompt, system=system, simulate=simulate)
        tally.calls += 1
        tally.tokens += estimate_tokens(system) + estimate_tokens(prompt) + estimate_tokens(reply)
        return reply


class CellNode(ExperimentNode):
    """Computes cells: one item per cell, each ending as a ``Cell`` in ``shared["sink"]``."""

    scenario = ""

    def jobs(self, question: Question, shared: dict[str, Any]) -> list[Job]:
        """The cells of this node for one question (one, unless it runs per ε)."""
        return [Job(question.id, self.scenario)]

    async def prep_async(self, shared: dict[str, Any]) -> list[Job]:
        return self.jobs(self.question(), shared)

    def item_key(self, job: Job) -> str:
        """The question, scenario and ε, and a digest of every setting the cell depends on
        (``Experiment.cell_settings``): a resumed run reuses only cells made as it would."""
        return f"{job.question_id}/{job.scenario}/{job.epsilon}/{self.experiment.key(job.scenario)}"

    async def exec_async(self, job: Job) -> Cell:
        question, tally = self.question(), Tally()
        started = time.perf_counter()
        cell = await self.run_cell(question, job, tally)
        return cell.model_copy(
            update={
                "calls": tally.calls,
                "tokens": tally.tokens,
                "seconds": round(time.perf_counter() - started, 4),
            }
        )

    async def run_cell(self, question: Question, job: Job, tally: Tally) -> Cell:
        """Compute one cell; override in subclasses."""
        raise NotImplementedError

    def scored(self, question: Question, job: Job, reply: str, **fields: Any) -> Cell:
        """The cell for a final reply: its letter and whether it is correct."""
        letter = parse_answer(reply)
        return Cell(
            question_id=question.id,
            scenario=job.scenario,
            mechanism=MECHANISMS.get(job.scenario),
            epsilon=job.epsilon,
            variant=self.experiment.variant if job.scenario in MECHANISMS else None,
            answer=letter,
            correct=letter == question.letter,
            **fields,
        )

    async def post_async(self, shared: dict[str, Any], jobs: list[Job], results: list[Any]) -> None:
        sink: ResultSink = shared["sink"]
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, fk.ErrorRecord):
                result = Cell(
                    question_id=job.question_id,
                    scenario=job.scenario,
                    mechanism=MECHANISMS.get(job.scenario),
                    epsilon=job.epsilon,
                    variant=self.experiment.variant if job.scenario in MECHANISMS else None,
                    error=f"{result.error_type}: {result.message}",
                )
            sink.add(result)


class DirectAnswer(CellNode):
    """A model answers alone: the local one (scenario 1) or the remote one (scenario 4)."""

    role: Role = "local"

    async def run_cell(self, question: Question, job: Job, tally: Tally) -> Cell:
        sim, role = self.experiment.simulator, self.role
        reply = await self.ask(
            role,
            tally,
            answer_prompt(question),
            ANSWER_SYSTEM,
            lambda: sim.answer(role, question),
        )
        return self.scored(question, job, reply)


class LocalAnswer(DirectAnswer):
    """Scenario 1: the local model answers alone."""

    scenario = "1"
    role = "local"


class RemoteAnswer(DirectAnswer):
    """Scenario 4: the remote model answers alone."""

    scenario = "4"
    role = "remote"


class CoTAnswer(CellNode):
    """Scenario 2 and the base of 3.x: the remote model writes a CoT for a text (here the
    original question), and the local model answers the original using it."""

    scenario = "2"

    async def cot_then_answer(
        self, question: Question, job: Job, tally: Tally, text: str, sanitised: Sanitised | None
    ) -> Cell:
        sim = self.experiment.simulator
        cot = await self.ask(
            "remote", tally, cot_prompt(text), COT_SYSTEM, lambda: sim.cot(question, text)
        )
        reply = await self.ask(
            "local",
            tally,
            answer_prompt(question, cot),
            ANSWER_SYSTEM,
            lambda: sim.answer("local", question, cot),
        )
        if sanitised is None:
            return self.scored(question, job, reply, cot=cot)
        return self.scored(
            question,
            job,
            reply,
            sanitised=sanitised.text,
            kept=sanitised.kept,
            words=sanitised.words,
            cot=cot,
        )

    async def run_cell(self, question: Question, job: Job, tally: Tally) -> Cell:
        return await self.cot_then_answer(question, job, tally, question.question, None)


class PrivateCells(CoTAnswer):
    """Scenario 3.x for a word-level sanitiser (3.2 to 3.5): one cell per ε, all at once.
    The sanitiser runs on the run's thread pool (it is NumPy work, counted as CPU-bound), then
    the remote CoT sees only its output."""

    def __init__(self, experiment: Experiment, scenario: str, **options: Any) -> None:
        options.setdefault("name", MECHANISMS[scenario])
        super().__init__(experiment, **options)
        self.scenario = scenario

    def jobs(self, question: Question, shared: dict[str, Any]) -> list[Job]:
        return [Job(question.id, self.scenario, eps) for eps in self.experiment.epsilons]

    async def sanitise(self, question: Question, job: Job) -> Sanitised:
        """The text the remote model sees; runs in a thread, as building the mechanism (the
        first time) and sanitising are NumPy work."""
        return await fk.to_thread(self.sanitise_sync, question, job, cpu_bound=True)

    def sanitise_sync(self, question: Question, job: Job) -> Sanitised:
        assert job.epsilon is not None
        mechanism = self.experiment.mechanism(job.scenario, job.epsilon)
        assert isinstance(mechanism, WordMechanism)
        return mechanism.sanitised(question.question, self.experiment.rng(job))

    async def run_cell(self, question: Question, job: Job, tally: Tally) -> Cell:
        sanitised = await self.sanitise(question, job)
        return await self.cot_then_answer(question, job, tally, sanitised.text, sanitised)


class PhraseDPCells(PrivateCells):
    """Scenario 3.0: per ε, choose one of the question's paraphrases with the exponential
    mechanism (``shared["candidates"]``, written by ``Paraphrase``)."""

    def __init__(self, experiment: Experiment, **options: Any) -> None:
        super().__init__(experiment, "3.0", **options)

    def jobs(self, question: Question, shared: dict[str, Any]) -> list[Job]:
        candidates = tuple(shared.get("candidates", ()))
        return [job._replace(candidates=candidates) for job in super().jobs(question, shared)]

    def sanitise_sync(self, question: Question, job: Job) -> Sanitised:
        if not job.candidates:
            raise NoCandidatesError(
                f"question {question.id}: no usable paraphrase (every band failed or copied "
                "the question); see the paraphrase node's errors in the run report"
            )
        assert job.epsilon is not None
        mechanism = self.experiment.mechanism(job.scenario, job.epsilon)
        assert isinstance(mechanism, PhraseDP)
        chosen = mechanism.select(question.question, job.candidates, self.experiment.rng(job))
        return Sanitised(chosen, *kept_words(question.question, chosen))


class Paraphrase(ExperimentNode):
    """PhraseDP's candidates: the local model paraphrases the question once per similarity
    band, all bands at once; duplicates and copies of the question are dropped."""

    def item_key(self, band: str) -> str:
        key = self.experiment.key("paraphrase")
        return f"{self.params['question']['id']}/paraphrase/{band}/{key}"

    async def prep_async(self, shared: dict[str, Any]) -> list[str]:
        return [band for band, _ in BANDS]

    async def exec_async(self, band: str) -> list[str]:
        question, sim = self.question(), self.experiment.simulator
        count = self.experiment.paraphrases_per_band
        system = PARAPHRASE_SYSTEM.format(count=count, instruction=dict(BANDS)[band])
        generator = self.experiment.local_generator
        if generator is not None:
            text = await generate(
                generator, f"{system}\n\n{question.question}", self.experiment.local.limiter
            )
            return paraphrases_in(text)
        reply = await self.client("local").parse(
            question.question,
            Paraphrases,
            system=system,
            simulate=lambda: Paraphrases(
                paraphrases=sim.paraphrases(question.question, band, count)
            ).model_dump_json(),
        )
        return reply.paraphrases

    async def post_async(
        self, shared: dict[str, Any], bands: list[str], results: list[Any]
    ) -> None:
        written = [p for r in results if not isinstance(r, fk.ErrorRecord) for p in r]
        shared["candidates"] = clean_candidates(self.question().question, written)


class QuestionsFlow(fk.AsyncParallelBatchFlow):
    """Fans out over ``shared["questions"]`` (any iterable of Question, pulled lazily) and
    writes every cell to ``shared["output"]/results.jsonl``; ends with ``shared["table"]``.
    ``shared["progress_every"]`` (seconds, optional) prints questions and cells done."""

    def __init__(self, start: fk.BaseNode, experiment: Experiment, **options: Any) -> None:
        super().__init__(start=start, **options)
        self.experiment = experiment

    async def prep_async(self, shared: dict[str, Any]) -> Iterator[dict[str, Any]]:
        output = Path(shared["output"])
        shared["sink"] = ResultSink(
            output / "results.jsonl",
            self.experiment.cells_per_question,
            progress_every=shared.get("progress_every"),
            variant=self.experiment.variant,
        )
        return ({"question": q.model_dump()} for q in shared["questions"])

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
        sink: ResultSink = shared["sink"]
        sink.close()
        sink.table.bounds = await asyncio.to_thread(self.experiment.bounds)
        shared["table"] = sink.table


def _discard(shared: Any, updates: dict[str, dict[str, Any]]) -> None:
    """Branches report through the sink; nothing of theirs is merged back."""


def build_flow(experiment: Experiment, *, question_concurrency: int = 64) -> QuestionsFlow:
    """The experiment's graph for the scenarios ``experiment`` selects."""
    chosen = experiment.scenarios
    branches: list[fk.BaseNode] = []
    if "1" in chosen:
        branches.append(LocalAnswer(experiment, name="local_answer"))
    if "2" in chosen:
        branches.append(CoTAnswer(experiment, name="remote_cot"))
    if "4" in chosen:
        branches.append(RemoteAnswer(experiment, name="remote_answer"))
    private: list[fk.BaseNode] = []
    if "3.0" in chosen:
        paraphrase = Paraphrase(experiment, name="paraphrase")
        paraphrase >> PhraseDPCells(experiment)
        private.append(fk.AsyncFlow(start=paraphrase, name="phrasedp_flow"))
    for scenario in ("3.2", "3.3", "3.4", "3.5"):
        if scenario in chosen:
            private.append(PrivateCells(experiment, scenario))
    if private:
        branches.append(fk.Parallel(*private, reducer=_discard, name="private"))
    question = fk.AsyncFlow(
        start=fk.Parallel(*branches, reducer=_discard, name="scenarios"), name="question"
    )
    return QuestionsFlow(question, experiment, max_concurrency=question_concurrency, name="medmcqa")
