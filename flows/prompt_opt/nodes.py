"""The optimisation as a flowkit graph: evaluate, advance the proposals, rewrite, repeat.

::

    Start ─► Advance ─"step"─► Step ┬─ Evaluate (the task's node: every queued evaluation)
               ▲                    └─ Reflect (every pending rewrite or LLM merge)
               └────────────────────────┘   (both branches at once, within the limits)
             Advance ─"done"─► Finish (writes the files)

``Advance`` settles what the finished work decides (``flows.prompt_opt.search``) and says
whether another step runs; in a step, one proposal's rewrite runs while another's
evaluations do. The rewrites are checkpointed items with stable keys; so are the task's
calls, so a resumed run retraces the same rounds from the store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import flowkit as fk
from flows.prompt_opt import simulated
from flows.prompt_opt.budget import StopSwitch
from flows.prompt_opt.conversation import (
    NODE_NAMES,
    AssistantTurn,
    DummiesTask,
    Judge,
    Role,
    RoleSettings,
    Said,
    UserTurn,
    billed,
)
from flows.prompt_opt.events import Callbacks
from flows.prompt_opt.outputs import write_optimisation
from flows.prompt_opt.pareto import mean_score
from flows.prompt_opt.prompts import (
    REFLECT_SYSTEM,
    Evidence,
    extract_prompt,
    merge_request,
    reflect_request,
)
from flows.prompt_opt.search import OptState, Proposal
from flows.prompt_opt.task import Task
from nodes.llm import LLMSettings, ParallelLLMNode


@dataclass(frozen=True)
class Rewrite:
    """One reflection or LLM-merge request: for one component of one proposal."""

    key: str
    proposal: str
    component: str
    kind: str
    request: str


def _state(shared: dict[str, Any]) -> OptState:
    state: OptState = shared["state"]
    return state


class Reflect(ParallelLLMNode):
    """Writes the round's children: a rewrite of one component of a parent, or an LLM merge
    of two front members' texts, component by component."""

    role: ClassVar[Role] = "reflect"
    on_error = "collect"

    def __init__(self, **options: Any) -> None:
        options.setdefault("name", NODE_NAMES["reflect"])
        super().__init__(**options)

    def item_key(self, item: Rewrite) -> str:
        return item.key

    async def prep_async(self, shared: dict[str, Any]) -> list[Rewrite]:
        state = _state(shared)
        rewrites = []
        for p in state.proposals:
            if p.stage != "rewrite":
                continue
            components = p.merge_components if p.kind == "llm-merge" else (p.component or "",)
            for component in components:
                request = self.request(state, p, component)
                digest = hashlib.blake2b(request.encode(), digest_size=8).hexdigest()
                key = f"{p.key}:{component}:{digest}"
                rewrites.append(Rewrite(key, p.key, component, p.kind, request))
        return rewrites

    def request(self, state: OptState, p: Proposal, component: str) -> str:
        """The text the reflector (or LLM merger) is sent for ``p``'s ``component``."""
        pool = state.pool
        if p.kind == "llm-merge":
            return merge_request(
                [
                    (
                        pool.candidates[q].components[component],
                        mean_score(pool.val_scores(q, state.val)) or 0.0,
                    )
                    for q in p.parents
                ]
            )
        parent = pool.candidates[p.parents[0]]
        evidence = [
            Evidence(
                row=ev.row,
                trace=ev.trace or f"(failed: {ev.error})",
                score=ev.value,
                feedback=(ev.feedback or ev.error or "") if state.config.feedback else None,
            )
            for ev in state.evidence(p)
        ]
        rejected = (
            state.rejected.get((parent.id, component), [])[-5:]
            if state.config.show_rejected
            else []
        )
        others = {n: t for n, t in parent.components.items() if n != component}
        return reflect_request(
            parent.components[component],
            evidence,
            rejected,
            p.variant,
            p.variants,
            component=component,
            others=others,
            unit=state.task.unit,
        )

    async def exec_async(self, item: Rewrite) -> Said:
        rule = simulated.merge if item.kind == "llm-merge" else simulated.reflect
        reply, error, bill = await billed(
            self.llm,
            lambda: self.llm.chat(
                item.request, system=REFLECT_SYSTEM, simulate=lambda: rule(item.request)
            ),
        )
        return Said(text=extract_prompt(reply) if reply else "", error=error, bill=bill)

    async def post_async(
        self, shared: dict[str, Any], items: list[Rewrite], results: list[Any]
    ) -> None:
        state = _state(shared)
        made: dict[str, dict[str, str | None]] = {}
        for item, result in zip(items, results, strict=True):
            text: str | None = None
            if isinstance(result, fk.ErrorRecord):
                why = f"{result.error_type}: {result.message}"
            elif isinstance(result, Said):
                state.pool.charge(self.role, result.bill)
                why, text = result.error or "", result.text if result.error is None else None
            else:  # a subclass's exec that returns the text itself
                state.pool.charge(self.role, None)
                why, text = "", str(result)
            if text is None:
                state.notes.append(
                    f"round {state.round}: {item.kind} {item.proposal} failed: {why}"
                )
            made.setdefault(item.proposal, {})[item.component] = (
                text.strip() + "\n" if text and text.strip() else None
            )
        state.rewrites_done(made)


class Start(fk.AsyncNode):
    """Creates the state from the shared store (``config``, ``task``, ``splits``, ``seeds``
    and, optionally, ``in_flight``, ``prices``, ``callbacks`` and ``stop``)."""

    checkpoint = False

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
        shared["state"] = OptState(
            shared["config"],
            shared["task"],
            shared["splits"],
            shared["seeds"],
            in_flight=shared.get("in_flight"),
            prices=shared.get("prices"),
            callbacks=shared.get("callbacks") or Callbacks(),
            stop=shared.get("stop") or StopSwitch(),
        )


class Advance(fk.AsyncNode):
    """Settles the finished evaluations and rewrites; says what runs next."""

    checkpoint = False

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> str:
        return _state(shared).advance()


class Finish(fk.AsyncNode):
    """Writes the optimisation's files into ``shared["output"]`` (when given), off the loop."""

    checkpoint = False
    executor = "thread"

    async def prep_async(self, shared: dict[str, Any]) -> tuple[OptState, Path | None]:
        output = shared.get("output")
        return _state(shared), None if output is None else Path(output)

    def exec(self, prep_res: tuple[OptState, Path | None]) -> list[Path]:
        state, output = prep_res
        return [] if output is None else write_optimisation(state, output)

    async def post_async(
        self, shared: dict[str, Any], prep_res: tuple[OptState, Path | None], paths: list[Path]
    ) -> None:
        state, output = prep_res
        if output is not None and output / "progress.png" not in paths:
            state.notes.append(
                "progress.png skipped: matplotlib is missing (pip install 'flowkit[report]')"
            )
        shared["written"] = paths


def prompt_opt_flow(
    settings: RoleSettings | None = None,
    *,
    task: Task | None = None,
    user: type[UserTurn] = UserTurn,
    assistant: type[AssistantTurn] = AssistantTurn,
    judge: type[Judge] = Judge,
    reflect: type[Reflect] = Reflect,
) -> fk.AsyncFlow:
    """The optimisation flow for ``task`` (default: the dummies conversation with
    ``settings`` and the node classes given). Its shared store needs ``config``, ``task``
    (the same), ``splits`` and ``seeds`` (dicts of components), and ``output`` (a folder)
    for files; it ends holding ``state`` (an OptState) and ``written`` (the files' paths)."""
    given = dict(settings or {})
    if task is None:
        task = DummiesTask(given, user=user, assistant=assistant, judge=judge)
    evaluate = task.evaluation_node()
    start, advance, finish = Start(), Advance(), Finish()
    rewrite = reflect(settings=given.get("reflect") or LLMSettings())
    step = fk.Parallel(evaluate, rewrite, names=("evaluate", "rewrite"), name="Step")
    start >> advance
    advance - "step" >> step
    step >> advance
    advance - "done" >> finish
    return fk.AsyncFlow(start=start, name="prompt-opt")
