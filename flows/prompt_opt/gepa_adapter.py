"""gepa's own engine with flowkit underneath (the ``gepa`` extra: ``pip install 'flowkit[gepa]'``).

::

    from flows.prompt_opt import DummiesTask, load_dummies
    from flows.prompt_opt.gepa_adapter import run_gepa

    run = run_gepa(
        DummiesTask(settings),                    # any flows.prompt_opt Task
        {"system_prompt": "You are ..."},         # gepa's seed candidate
        trainset=load_dummies(),
        journal="out/calls.jsonl",                # per-call durable resume
        max_metric_calls=400,                     # any gepa.optimize option
    )
    run.result.best_candidate, run.usage

``gepa.optimize`` runs unchanged, in a worker thread inside one flowkit run. Every LLM call
it causes, the task's (``FlowkitAdapter.evaluate``) and the reflector's
(``FlowkitReflectionLM``), runs on the run's event loop under its named limiters
(concurrency, rpm, tpm) and is billed to the ledger by role. Each of gepa's batches runs
all its rows at once within those limits (gepa's own loop stays sequential). With
``journal``, every reply is appended to that file as it lands, and a rerun with the same
file (gepa is deterministic for a seed) replays the finished calls instead of paying for
them again, so a killed run loses only the calls that were in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import flowkit as fk
from flowkit.extras import require
from flows.prompt_opt import simulated
from flows.prompt_opt.prompts import FEEDBACK_LABEL
from flows.prompt_opt.run import llm_limits
from flows.prompt_opt.search import Prices
from flows.prompt_opt.task import Scored, Task
from nodes.llm import Bill, Bills, CallJournal, LLMClient, LLMSettings, journaled, metered

T = TypeVar("T")
log = logging.getLogger("flows.prompt_opt.gepa")


class Bridge:
    """Runs coroutines on the flowkit run's event loop from gepa's thread, and waits."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Awaitable[T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(_as_coro(coro), self.loop)
        return future.result()


async def _as_coro(awaitable: Awaitable[T]) -> T:
    return await awaitable


class FlowkitAdapter:
    """A ``gepa.GEPAAdapter`` whose evaluations are a flowkit ``Task``'s, run in parallel."""

    propose_new_texts = None

    def __init__(self, task: Task, bridge: Bridge) -> None:
        self.task, self.bridge = task, bridge

    def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> Any:
        return self.batch_evaluate([(candidate, batch)], capture_traces)[0]

    def batch_evaluate(
        self, items: list[tuple[dict[str, str], list[Any]]], capture_traces: bool = True
    ) -> list[Any]:
        """Every (candidate, rows) pair at once; one ``EvaluationBatch`` per pair."""
        gepa_adapter = require("gepa.core.adapter", "the gepa adapter", extra="gepa")

        async def all_pairs() -> list[Sequence[Scored]]:
            return list(await asyncio.gather(*(self.task.evaluate(c, rows) for c, rows in items)))

        out = []
        for (_, rows), scored in zip(items, self.bridge.run(all_pairs()), strict=True):
            traces = [
                {"row": self.task.row_id(row), "scored": s}
                for row, s in zip(rows, scored, strict=True)
            ]
            out.append(
                gepa_adapter.EvaluationBatch(
                    outputs=[s.trace for s in scored],
                    scores=[0.0 if s.error else s.score for s in scored],
                    trajectories=traces if capture_traces else None,
                )
            )
        return out

    def make_reflective_dataset(
        self, candidate: dict[str, str], eval_batch: Any, components_to_update: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """For each component, one record per row: the row, what happened, the feedback."""
        records = []
        for trace in eval_batch.trajectories or []:
            scored: Scored = trace["scored"]
            feedback = scored.error or scored.feedback
            records.append(
                {
                    "Inputs": trace["row"],
                    "Generated Outputs": scored.trace or "(nothing)",
                    "Feedback": f"{FEEDBACK_LABEL} {feedback} (score {scored.score:.2f})",
                }
            )
        return {name: records for name in components_to_update}


class FlowkitReflectionLM:
    """gepa's reflection model, called through flowkit (role ``reflect``); offline, the
    simulated reflector reads gepa's prompt as it reads flowkit's."""

    def __init__(self, settings: LLMSettings, bridge: Bridge, prices: Prices | None = None):
        self.client = LLMClient(settings, name="reflect")
        self.bridge, self.prices = bridge, dict(prices or {})
        self.bills: Bills | None = None

    def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        messages: Any = prompt
        text = (
            prompt
            if isinstance(prompt, str)
            else " ".join(str(m.get("content", "")) for m in prompt)
        )
        return self.bridge.run(
            self.client.chat(messages, simulate=lambda: simulated_gepa_reflection(text))
        )

    @property
    def total_cost(self) -> float:
        """Dollars the reflection calls billed so far (gepa's ``max_reflection_cost``)."""
        price = self.prices.get("reflect")
        bill = (self.bills or {}).get("reflect")
        if price is None or bill is None:
            return 0.0
        return (bill.prompt_tokens * price[0] + bill.completion_tokens * price[1]) / 1e6


def simulated_gepa_reflection(prompt: str) -> str:
    """The simulated reflector on gepa's reflection prompt: the current instruction is its
    first fenced block; the answer is fenced, as gepa extracts it."""
    _, _, rest = prompt.partition("```")
    current, _, after = rest.partition("```")
    request = f"<<<\n{current.strip()}\n>>>\n{after}"
    new = simulated.reflect(request)
    return "```\n" + new.removeprefix("<<<\n").removesuffix("\n>>>") + "\n```"


@dataclass
class GepaRun:
    """What gepa found, and what flowkit saw of it: the run, the bills by role."""

    result: Any
    info: fk.RunInfo
    bills: dict[str, Bill]
    replayed: int

    def usage(self, prices: Prices | None = None) -> list[dict[str, Any]]:
        rows = []
        for name, bill in sorted(self.bills.items()):
            price = (prices or {}).get(name)
            cost = (
                None
                if price is None
                else (bill.prompt_tokens * price[0] + bill.completion_tokens * price[1]) / 1e6
            )
            rows.append({"role": name, **bill.model_dump(), "cost": cost})
        return rows


class _QuietLogger:
    def log(self, message: str) -> None:
        log.debug("%s", message)


class GepaEngine(fk.AsyncNode):
    """One item: ``gepa.optimize`` on a worker thread, its calls on this run's loop."""

    checkpoint = False

    def __init__(self, job: dict[str, Any], **options: Any) -> None:
        options.setdefault("name", "gepa")
        super().__init__(**options)
        self.job = job

    async def exec_async(self, prep_res: Any) -> Any:
        bridge = Bridge(asyncio.get_running_loop())
        return await asyncio.to_thread(self._optimize, bridge)

    def _optimize(self, bridge: Bridge) -> tuple[Any, Bills, int]:
        gepa = require("gepa", "the gepa adapter", extra="gepa")
        job = self.job
        journal = CallJournal(job["journal"]) if job["journal"] is not None else None
        opened = journaled(journal) if journal is not None else contextlib.nullcontext()
        try:
            with metered() as bills, opened:
                lm = FlowkitReflectionLM(job["reflect"], bridge, job["prices"])
                lm.bills = bills
                result = gepa.optimize(
                    seed_candidate=job["seed"],
                    trainset=job["trainset"],
                    valset=job["valset"],
                    adapter=FlowkitAdapter(job["task"], bridge),
                    reflection_lm=lm,
                    **job["options"],
                )
        finally:
            if journal is not None:
                journal.close()
        return result, dict(bills), journal.replayed if journal is not None else 0

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
        shared["gepa"] = exec_res


def run_gepa(
    task: Task,
    seed_candidate: Mapping[str, str],
    trainset: Sequence[Any],
    valset: Sequence[Any] | None = None,
    *,
    reflect: LLMSettings | None = None,
    runner: fk.Runner | None = None,
    journal: str | Path | None = None,
    prices: Prices | None = None,
    **options: Any,
) -> GepaRun:
    """Run ``gepa.optimize`` with ``task`` as its adapter and flowkit under every call.

    ``reflect`` sets the reflection model's calls (default: the environment's); ``runner``
    brings the limits (default ``llm_limits()``: 3 calls in flight); ``journal`` a file of
    replies for per-call resume; ``prices`` the ledger's (and ``max_reflection_cost``'s)
    dollars per million tokens by role; ``options`` go to ``gepa.optimize`` as they are
    (``max_metric_calls``, ``seed``, ``callbacks``, ``use_merge``...); its log goes to the
    ``flows.prompt_opt.gepa`` logger unless ``logger`` is given.
    """
    require("gepa", "the gepa adapter", extra="gepa")
    task.check([*trainset, *(valset or ())])
    runner = runner or fk.Runner(limits=llm_limits(), progress=False)
    options.setdefault("logger", _QuietLogger())
    job = {
        "task": task,
        "seed": dict(seed_candidate),
        "trainset": list(trainset),
        "valset": list(valset) if valset is not None else None,
        "reflect": reflect or LLMSettings(),
        "journal": Path(journal) if journal is not None else None,
        "prices": dict(prices or {}),
        "options": options,
    }
    shared: dict[str, Any] = {}
    runner.run(fk.AsyncFlow(start=GepaEngine(job), name="gepa"), shared)
    assert runner.last_run is not None
    result, bills, replayed = shared["gepa"]
    return GepaRun(result, runner.last_run, bills, replayed)
