"""The prompt-optimisation flow: select → reflect → evaluate → accept, looping, as a flowkit graph.

::

    Start ─► Evaluate ─► Accept ─"select"─► Select ─"propose"─► Reflect ─► Evaluate ...
                ▲           │ "evaluate" (children that passed their minibatch)
                └───────────┘ "done" ─► Finish

``Evaluate`` is an ``AsyncParallelBatchFlow`` that runs one conversation per queued
(candidate, dummy, repeat), all at once: ``User`` ⇄ ``Assistant`` for up to ``turns`` turns,
strictly in turn, then ``Judge``, then ``Record``. Each node makes at most one LLM call,
which takes its role's limiter for that call only, so a conversation waiting for its next
turn holds no slot. Every call is one checkpointed item with a stable key, so a resumed run
replays finished turns from the store. Subclass ``UserTurn``, ``AssistantTurn``, ``Judge``
or ``Reflect`` (e.g. a different judge) and pass the class to ``prompt_opt_flow``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import flowkit as fk
from flows.prompt_opt import simulated
from flows.prompt_opt.outputs import write_optimisation
from flows.prompt_opt.pareto import mean_score
from flows.prompt_opt.prompts import (
    DONE,
    JUDGE_SYSTEM,
    REFLECT_SYSTEM,
    Evidence,
    Message,
    Verdict,
    extract_prompt,
    judge_request,
    merge_request,
    reflect_request,
    user_system,
    user_view,
)
from flows.prompt_opt.scenario import Dummy
from flows.prompt_opt.state import NODE_NAMES, ROLES, Conversation, OptState, Proposal, Role
from nodes.llm import LLMSettings, ParallelLLMNode
from nodes.llm.nodes import LLMNode

RoleSettings = Mapping[Role, LLMSettings]
"""LLM settings per role; a role left out gets ``LLMSettings()`` (the environment's)."""


@dataclass(frozen=True)
class Turn:
    """What one conversation node's exec needs: never the shared store."""

    key: str
    dummy: Dummy
    turn: int
    system: str
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class Rewrite:
    """One reflection or merge request."""

    key: str
    kind: str
    request: str


def _state(shared: dict[str, Any]) -> OptState:
    state: OptState = shared["state"]
    return state


class ConversationNode(LLMNode):
    """A node inside one conversation (``params["conv"]`` names it): one LLM call per run.

    A call that fails after its retries ends the conversation as errored (not scored 0).
    """

    role: ClassVar[Role]
    on_error = "collect"

    def item_key(self, item: Turn) -> str:
        return item.key

    def conversation(self, shared: dict[str, Any]) -> tuple[OptState, Conversation]:
        state = _state(shared)
        return state, state.conversations[self.params["conv"]]

    def counted(self, shared: dict[str, Any], result: Any) -> Conversation | None:
        """The conversation after a successful call (counted), or None when it failed."""
        state, conv = self.conversation(shared)
        if isinstance(result, fk.ErrorRecord):
            conv.error = f"{self.name}: {result.error_type}: {result.message}"
            return None
        state.calls[self.role] += 1
        conv.calls += 1
        return conv


class UserTurn(ConversationNode):
    """The user simulator: an LLM playing the dummy writes the user's next message."""

    role = "user"

    def __init__(self, **options: Any) -> None:
        options.setdefault("name", NODE_NAMES["user"])
        super().__init__(**options)

    async def prep_async(self, shared: dict[str, Any]) -> Turn:
        state, conv = self.conversation(shared)
        dummy = state.dummies[conv.dummy]
        view = tuple(user_view(dummy, conv.messages))
        return Turn(f"{conv.key}:{conv.turns}:user", dummy, conv.turns, user_system(dummy), view)

    async def exec_async(self, item: Turn) -> str:
        return await self.llm.chat(
            list(item.messages),
            system=item.system,
            simulate=lambda: simulated.user_message(item.dummy, item.turn),
        )

    async def post_async(self, shared: dict[str, Any], item: Turn, reply: Any) -> str:
        conv = self.counted(shared, reply)
        if conv is None:
            return "failed"
        text = reply.strip()
        ended = text.endswith(DONE)
        text = text.removesuffix(DONE).strip()
        if text:
            conv.messages.append({"role": "user", "content": text})
        return "judge" if ended else "reply"


class AssistantTurn(ConversationNode):
    """The assistant under test: an LLM with the candidate system prompt answers."""

    role = "assistant"

    def __init__(self, **options: Any) -> None:
        options.setdefault("name", NODE_NAMES["assistant"])
        super().__init__(**options)

    async def prep_async(self, shared: dict[str, Any]) -> Turn:
        state, conv = self.conversation(shared)
        prompt = state.candidates[conv.candidate].text
        key = f"{conv.key}:{conv.turns}:assistant"
        return Turn(key, state.dummies[conv.dummy], conv.turns, prompt, tuple(conv.messages))

    async def exec_async(self, item: Turn) -> str:
        return await self.llm.chat(
            list(item.messages),
            system=item.system,
            simulate=lambda: simulated.assistant_reply(item.system, item.turn),
        )

    async def post_async(self, shared: dict[str, Any], item: Turn, reply: Any) -> str:
        conv = self.counted(shared, reply)
        if conv is None:
            return "failed"
        conv.messages.append({"role": "assistant", "content": reply.strip()})
        return "next" if conv.turns < _state(shared).config.turns else "judge"


class Judge(ConversationNode):
    """The judge: a score in [0, 1] and feedback in words, as structured output."""

    role = "judge"

    def __init__(self, **options: Any) -> None:
        options.setdefault("name", NODE_NAMES["judge"])
        super().__init__(**options)

    async def prep_async(self, shared: dict[str, Any]) -> Turn:
        state, conv = self.conversation(shared)
        key = f"{conv.key}:judge:{len(conv.messages)}"
        return Turn(key, state.dummies[conv.dummy], conv.turns, JUDGE_SYSTEM, tuple(conv.messages))

    async def exec_async(self, item: Turn) -> Verdict:
        return await self.llm.parse(
            judge_request(item.dummy, item.messages),
            Verdict,
            system=item.system,
            simulate=lambda: simulated.verdict(item.dummy, item.messages).model_dump_json(),
        )

    async def post_async(self, shared: dict[str, Any], item: Turn, verdict: Any) -> str:
        conv = self.counted(shared, verdict)
        if conv is not None:
            conv.score, conv.feedback = verdict.score, verdict.feedback
        return "default"


class Record(fk.AsyncNode):
    """Ends a conversation: judged or errored; too many errors in a row stop the run."""

    checkpoint = False

    async def prep_async(self, shared: dict[str, Any]) -> Conversation:
        conv: Conversation = _state(shared).conversations[self.params["conv"]]
        return conv

    async def post_async(self, shared: dict[str, Any], conv: Conversation, _: Any) -> None:
        _state(shared).finish_conversation(conv)


class Evaluate(fk.AsyncParallelBatchFlow):
    """Every queued conversation at once; the LLM limiters bound the calls in flight."""

    async def prep_async(self, shared: dict[str, Any]) -> list[dict[str, str]]:
        state = _state(shared)
        state.pass_keys = state.take_queue()
        return [{"conv": key} for key in state.pass_keys]


class Reflect(ParallelLLMNode):
    """Writes the round's children: reflective rewrites of a parent, or merges of two."""

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
        for proposal in state.proposals:
            request = self.request(state, proposal)
            digest = hashlib.blake2b(request.encode(), digest_size=8).hexdigest()
            rewrites.append(Rewrite(f"{proposal.key}:{digest}", proposal.kind, request))
        return rewrites

    def request(self, state: OptState, proposal: Proposal) -> str:
        """The text the reflector (or merger) is sent for ``proposal``."""
        if proposal.kind == "merge":
            a, b = (state.candidates[p] for p in proposal.parents)
            score_a, score_b = (mean_score(state.scores(p)) or 0.0 for p in proposal.parents)
            return merge_request(a.text, score_a, b.text, score_b)
        parent = state.candidates[proposal.parents[0]]
        evidence = [
            Evidence(
                dummy=conv.dummy,
                messages=tuple(dict(m) for m in conv.messages),
                score=conv.score or 0.0,
                feedback=conv.feedback if state.config.feedback else None,
            )
            for conv in state.evidence(parent.id, proposal.evidence)
        ]
        rejected = state.rejected.get(parent.id, [])[-5:]
        return reflect_request(parent.text, evidence, rejected, proposal.variant, proposal.variants)

    async def exec_async(self, item: Rewrite) -> str:
        rule = simulated.merge if item.kind == "merge" else simulated.reflect
        reply = await self.llm.chat(
            item.request, system=REFLECT_SYSTEM, simulate=lambda: rule(item.request)
        )
        return extract_prompt(reply)

    async def post_async(
        self, shared: dict[str, Any], items: list[Rewrite], results: list[Any]
    ) -> None:
        state = _state(shared)
        made = 0
        for proposal, result in zip(state.proposals, results, strict=True):
            if isinstance(result, fk.ErrorRecord):
                state.notes.append(
                    f"round {state.round}: {proposal.kind} of {', '.join(proposal.parents)} "
                    f"failed: {result.error_type}: {result.message}"
                )
                continue
            made += 1
            state.calls[self.role] += 1
            if result.strip():
                state.add_candidate(result, proposal.parents, proposal.kind, proposal.gate)
        state.record_rewrite_phase(made)


class Start(fk.AsyncNode):
    """Creates the state from ``config``, ``dummies`` and ``seeds``; queues the seeds."""

    checkpoint = False

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
        shared["state"] = OptState(shared["config"], shared["dummies"], shared["seeds"])


class Accept(fk.AsyncNode):
    """Settles the candidates whose conversations ended; ends the round when none waits."""

    checkpoint = False

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> str:
        state = _state(shared)
        state.record_evaluation_phase(state.pass_keys)
        state.decide()
        if state.queue:
            return "evaluate"
        return "done" if state.end_round() else "select"


class Select(fk.AsyncNode):
    """Draws the round's parent(s) from the Pareto front and plans the proposals."""

    checkpoint = False

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> str:
        return "propose" if _state(shared).plan_round() else "done"


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
    user: type[UserTurn] = UserTurn,
    assistant: type[AssistantTurn] = AssistantTurn,
    judge: type[Judge] = Judge,
    reflect: type[Reflect] = Reflect,
) -> fk.AsyncFlow:
    """The optimisation flow. Its shared store needs ``config`` (a PromptOptConfig),
    ``dummies`` and ``seeds`` (prompt texts), and ``output`` (a folder) for files; it ends
    holding ``state`` (an OptState) and ``written`` (the files' paths). Settings are checked
    here, before any work."""
    given = dict(settings or {})
    role_settings = {role: given.get(role) or LLMSettings() for role in ROLES}
    talk_user = user(settings=role_settings["user"])
    talk_assistant = assistant(settings=role_settings["assistant"])
    score = judge(settings=role_settings["judge"])
    record = Record()
    talk_user - "reply" >> talk_assistant
    talk_user - "judge" >> score
    talk_user - "failed" >> record
    talk_assistant - "next" >> talk_user
    talk_assistant - "judge" >> score
    talk_assistant - "failed" >> record
    score >> record
    evaluate = Evaluate(start=talk_user)

    start, accept, select = Start(), Accept(), Select()
    rewrite = reflect(settings=role_settings["reflect"])
    finish = Finish()
    start >> evaluate >> accept
    accept - "evaluate" >> evaluate
    accept - "select" >> select
    accept - "done" >> finish
    select - "propose" >> rewrite >> evaluate
    select - "done" >> finish
    return fk.AsyncFlow(start=start, name="prompt-opt")
