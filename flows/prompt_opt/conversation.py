"""The dummies task: a simulated user talks with the assistant under test, then a judge scores.

::

    Evaluate (one conversation per queued evaluation, all at once)
      User ⇄ Assistant, strictly in turn, up to ``turns`` turns ─► Judge
      (a call that fails for good ─► Record, which ends the conversation as failed)

Each node makes at most one LLM call, which takes its role's limiter for that call only,
so a conversation waiting for its next turn holds no slot; each call is one checkpointed
item with a stable key, so a resumed run replays finished turns from the store. A call that
fails for good ends its conversation as failed (scored 0, counted per candidate). The same
conversation is also offered as a plain async function (``DummiesTask.evaluate``), which
other engines (``flows.prompt_opt.gepa_adapter``) call. Subclass ``UserTurn``,
``AssistantTurn`` or ``Judge`` (another judge, say) and pass the class to ``DummiesTask``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel

import flowkit as fk
from flows.prompt_opt import simulated
from flows.prompt_opt.prompts import (
    DONE,
    JUDGE_SYSTEM,
    Message,
    Verdict,
    judge_request,
    transcript,
    user_system,
    user_view,
)
from flows.prompt_opt.scenario import Dummy, PromptOptInputError
from flows.prompt_opt.state import Evaluation
from flows.prompt_opt.task import Candidate, Scored, Task
from nodes.llm import Bill, LLMClient, LLMError, LLMNode, LLMSettings, metered

if TYPE_CHECKING:
    from flows.prompt_opt.search import OptState

Role = Literal["assistant", "user", "judge", "reflect"]
ROLES: tuple[Role, ...] = ("assistant", "user", "judge", "reflect")
NODE_NAMES: dict[Role, str] = {
    "assistant": "Assistant",
    "user": "User",
    "judge": "Judge",
    "reflect": "Reflect",
}
RoleSettings = Mapping[Role, LLMSettings]
"""LLM settings per role; a role left out gets ``LLMSettings()`` (the environment's)."""
T = TypeVar("T")


@dataclass(frozen=True)
class Turn:
    """What one conversation node's exec needs: never the shared store."""

    key: str
    dummy: Dummy
    turn: int
    system: str
    messages: tuple[Message, ...]


class Said(BaseModel):
    """One call's reply, or why it failed, and what it billed."""

    text: str = ""
    error: str | None = None
    bill: Bill = Bill()


class Judged(BaseModel):
    """The judge's verdict, or why it failed, and what it billed."""

    verdict: Verdict | None = None
    error: str | None = None
    bill: Bill = Bill()


async def billed(
    client: LLMClient, call: Callable[[], Awaitable[T]]
) -> tuple[T | None, str | None, Bill]:
    """Run one LLM call; its value or its error, and what it billed."""
    with metered() as bills:
        try:
            value: T | None = await call()
            error = None
        except LLMError as exc:
            value, error = None, f"{type(exc).__name__}: {exc}"
    return value, error, bills.get(client.name, Bill())


def _state(shared: dict[str, Any]) -> OptState:
    state: OptState = shared["state"]
    return state


class ConversationNode(LLMNode):
    """A node inside one conversation (``params["ev"]`` names it): one LLM call per run."""

    role: ClassVar[Role]
    on_error = "collect"
    task: DummiesTask | None = None

    def item_key(self, item: Turn) -> str:
        return item.key

    def evaluation(self, shared: dict[str, Any]) -> tuple[OptState, Evaluation]:
        state = _state(shared)
        return state, state.pool.evaluations[self.params["ev"]]

    def counted(self, shared: dict[str, Any], result: Any) -> tuple[Evaluation, Any] | None:
        """The evaluation and the call's value after a successful call; None (the
        conversation failed) otherwise. Charges what the call billed to this role (a
        subclass whose exec returns the text or verdict itself bills nothing here)."""
        state, ev = self.evaluation(shared)
        if isinstance(result, fk.ErrorRecord):
            ev.error = f"{self.name}: {result.error_type}: {result.message}"
            return None
        if isinstance(result, Said | Judged):
            state.pool.charge(self.role, result.bill)
            if result.error is not None:
                ev.error = f"{self.name}: {result.error}"
                return None
            value: Any = result.text if isinstance(result, Said) else result.verdict
        else:  # a subclass's exec that returns the text or verdict itself: no bill known
            value = result
        ev.calls += 1
        return ev, value

    async def say(self, item: Turn, simulate: Callable[[], str]) -> Said:
        """One turn's LLM call (``simulate`` answers offline), with what it billed."""
        text, error, bill = await billed(
            self.llm,
            lambda: self.llm.chat(list(item.messages), system=item.system, simulate=simulate),
        )
        return Said(text=text or "", error=error, bill=bill)


class UserTurn(ConversationNode):
    """The user simulator: an LLM playing the dummy writes the user's next message."""

    role = "user"

    def __init__(self, **options: Any) -> None:
        options.setdefault("name", NODE_NAMES["user"])
        super().__init__(**options)

    async def prep_async(self, shared: dict[str, Any]) -> Turn:
        state, ev = self.evaluation(shared)
        dummy = state.pool.rows[ev.row]
        view = tuple(user_view(dummy, ev.messages))
        return Turn(f"{ev.key}:{ev.turns}:user", dummy, ev.turns, user_system(dummy), view)

    async def exec_async(self, item: Turn) -> Said:
        return await self.say(item, lambda: simulated.user_message(item.dummy, item.turn))

    async def post_async(self, shared: dict[str, Any], item: Turn, reply: Any) -> str:
        got = self.counted(shared, reply)
        if got is None:
            return "failed"
        ev, text = got
        return "judge" if add_user_message(ev.messages, text) else "reply"


class AssistantTurn(ConversationNode):
    """The assistant under test: an LLM with the candidate as its system prompt answers."""

    role = "assistant"

    def __init__(self, **options: Any) -> None:
        options.setdefault("name", NODE_NAMES["assistant"])
        super().__init__(**options)

    async def prep_async(self, shared: dict[str, Any]) -> Turn:
        state, ev = self.evaluation(shared)
        system = state.task.render(state.pool.candidates[ev.candidate].components)
        key = f"{ev.key}:{ev.turns}:assistant"
        return Turn(key, state.pool.rows[ev.row], ev.turns, system, tuple(ev.messages))

    async def exec_async(self, item: Turn) -> Said:
        return await self.say(item, lambda: simulated.assistant_reply(item.system, item.turn))

    async def post_async(self, shared: dict[str, Any], item: Turn, reply: Any) -> str:
        got = self.counted(shared, reply)
        if got is None:
            return "failed"
        ev, text = got
        ev.messages.append({"role": "assistant", "content": text.strip()})
        task = _state(shared).task
        turns = task.turns if isinstance(task, DummiesTask) else self.task.turns if self.task else 3
        return "next" if ev.turns < turns else "judge"


class Judge(ConversationNode):
    """The judge: a score in [0, 1] and feedback in words, as structured output."""

    role = "judge"

    def __init__(self, **options: Any) -> None:
        options.setdefault("name", NODE_NAMES["judge"])
        super().__init__(**options)

    async def prep_async(self, shared: dict[str, Any]) -> Turn:
        state, ev = self.evaluation(shared)
        key = f"{ev.key}:judge:{len(ev.messages)}"
        return Turn(key, state.pool.rows[ev.row], ev.turns, JUDGE_SYSTEM, tuple(ev.messages))

    async def exec_async(self, item: Turn) -> Judged:
        task = self.task or DummiesTask()
        verdict, error, bill = await billed(
            self.llm,
            lambda: self.llm.parse(
                judge_request(item.dummy, item.messages),
                Verdict,
                system=item.system,
                simulate=lambda: task.simulated_verdict(
                    item.dummy, item.messages, item.key
                ).model_dump_json(),
            ),
        )
        return Judged(verdict=verdict, error=error, bill=bill)

    async def post_async(self, shared: dict[str, Any], item: Turn, verdict: Any) -> None:
        got = self.counted(shared, verdict)
        if got is not None:
            ev, value = got
            ev.score, ev.feedback = value.score, value.feedback
        end_conversation(shared, self.params["ev"])


def end_conversation(shared: dict[str, Any], key: str) -> None:
    """A conversation is over, judged or failed: its transcript becomes the trace."""
    state = _state(shared)
    ev = state.pool.evaluations[key]
    ev.trace = transcript(ev.messages)
    state.pool.finish(ev)


class Record(fk.AsyncNode):
    """Ends a conversation that failed before its judge."""

    checkpoint = False

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
        end_conversation(shared, self.params["ev"])


class Evaluate(fk.AsyncParallelBatchFlow):
    """Every queued conversation at once; the LLM limiters bound the calls in flight."""

    async def prep_async(self, shared: dict[str, Any]) -> list[dict[str, str]]:
        return [{"ev": key} for key in _state(shared).pool.take_queue()]


def hash_text(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def add_user_message(messages: list[Message], reply: str) -> bool:
    """Append the simulated user's message; True when the user said they are done."""
    text = reply.strip()
    ended = text.endswith(DONE)
    text = text.removesuffix(DONE).strip()
    if text:
        messages.append({"role": "user", "content": text})
    return ended


class DummiesTask(Task):
    """Conversations with simulated users ("dummies"), scored by a judge."""

    noun = "dummies"
    unit = "conversation"

    def __init__(
        self,
        settings: RoleSettings | None = None,
        *,
        turns: int = 3,
        user: type[UserTurn] = UserTurn,
        assistant: type[AssistantTurn] = AssistantTurn,
        judge: type[Judge] = Judge,
    ) -> None:
        given = dict(settings or {})
        self.settings: dict[Role, LLMSettings] = {
            role: given.get(role) or LLMSettings() for role in ("assistant", "user", "judge")
        }
        self.turns = turns
        self.node_classes = (user, assistant, judge)
        self._runs: Counter[tuple[str, str]] = Counter()

    def row_id(self, row: Any) -> str:
        return str(row.id)

    def check(self, rows: Sequence[Any]) -> None:
        for row in rows:
            if not isinstance(row, Dummy):
                raise PromptOptInputError(f"the dummies task needs Dummy rows, got {row!r:.60}")
            if self.settings["judge"].provider == "simulated":
                row.check_simulable()

    def roles(self) -> Mapping[str, LLMSettings]:
        return {str(role): s for role, s in self.settings.items()}

    def calls_per_evaluation(self) -> int:
        """A user and an assistant call per turn, and the judge."""
        return 2 * self.turns + 1

    def simulated_verdict(self, dummy: Dummy, messages: Sequence[Message], key: str) -> Verdict:
        """The simulated judge's verdict (``key`` names the call, for noisy subclasses)."""
        return simulated.verdict(dummy, messages)

    def evaluation_node(self) -> fk.BaseNode:
        user_cls, assistant_cls, judge_cls = self.node_classes
        talk_user = user_cls(settings=self.settings["user"])
        talk_assistant = assistant_cls(settings=self.settings["assistant"])
        score = judge_cls(settings=self.settings["judge"])
        for node in (talk_user, talk_assistant, score):
            node.task = self
        record = Record()
        talk_user - "reply" >> talk_assistant
        talk_user - "judge" >> score
        talk_user - "failed" >> record
        talk_assistant - "next" >> talk_user
        talk_assistant - "judge" >> score
        talk_assistant - "failed" >> record
        return Evaluate(start=talk_user)

    async def evaluate(self, candidate: Candidate, rows: Sequence[Any]) -> list[Scored]:
        """The conversations as plain async code (every row at once)."""
        clients = {str(role): LLMClient(s, name=role) for role, s in self.settings.items()}
        system = self.render(candidate)
        return list(await asyncio.gather(*(self.converse(row, system, clients) for row in rows)))

    async def converse(self, dummy: Dummy, system: str, clients: Mapping[str, LLMClient]) -> Scored:
        """One conversation and its verdict; a failed call ends it as failed."""
        messages: list[Message] = []
        user, assistant, judge = clients["user"], clients["assistant"], clients["judge"]
        try:
            for turn in range(self.turns):
                view = user_view(dummy, messages)
                said = await user.chat(
                    view,
                    system=user_system(dummy),
                    simulate=functools.partial(simulated.user_message, dummy, turn),
                )
                if add_user_message(messages, said):
                    break
                reply = await assistant.chat(
                    list(messages),
                    system=system,
                    simulate=functools.partial(simulated.assistant_reply, system, turn),
                )
                messages.append({"role": "assistant", "content": reply.strip()})
            self._runs[(system, dummy.id)] += 1
            key = f"{dummy.id}:{self._runs[(system, dummy.id)]}:{hash_text(system)}"
            verdict = await judge.parse(
                judge_request(dummy, messages),
                Verdict,
                system=JUDGE_SYSTEM,
                simulate=lambda: self.simulated_verdict(dummy, messages, key).model_dump_json(),
            )
        except LLMError as exc:
            return Scored(trace=transcript(messages), error=f"{type(exc).__name__}: {exc}")
        return Scored(score=verdict.score, feedback=verdict.feedback, trace=transcript(messages))
