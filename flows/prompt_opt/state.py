"""The optimiser's state between nodes: options, candidates, conversations, budget, rounds.

Everything here is decided on the event loop by the flow's prep and post hooks, in a fixed
order, from exec results that are stored and restored by key; so a resumed run retraces the
same rounds and draws the same random numbers as the run it continues.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.prompt_opt.pareto import Decision, accept, mean_score, pareto_front, select_parent
from flows.prompt_opt.prompts import Message
from flows.prompt_opt.scenario import Dummy, PromptOptInputError, TooManyFailuresError

Role = Literal["assistant", "user", "judge", "reflect"]
ROLES: tuple[Role, ...] = ("assistant", "user", "judge", "reflect")
NODE_NAMES: dict[Role, str] = {
    "assistant": "Assistant",
    "user": "User",
    "judge": "Judge",
    "reflect": "Reflect",
}
"""The node whose stats hold each role's calls, tokens and retries."""


class PromptOptConfig(BaseModel):
    """How the optimisation runs.

    ``mode`` "gepa": each round draws one parent from the Pareto front and makes
    ``proposals`` children at once, each checked on its own minibatch of dummies and scored
    on all of them only when it beats the parent there. "generational": each round draws
    ``proposals`` parents and scores every child on every dummy. ``budget`` caps the LLM
    calls of the whole run (a round starts only if its worst case fits; a call is one
    answered request: retries and a judge's re-asks for invalid JSON show in the usage
    ledger, not here); ``generations`` caps the rounds, the seed prompts' being round 1.
    ``merges`` bounds the merge proposals (two Pareto-front members combined by the
    reflection model, kept only if at least as good as the better parent on a minibatch).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["gepa", "generational"] = "gepa"
    budget: int | None = Field(default=1000, ge=1)
    generations: int | None = Field(default=None, ge=1)
    turns: int = Field(default=3, ge=1)
    minibatch: int = Field(default=3, ge=1)
    proposals: int = Field(default=2, ge=1)
    repeats: int = Field(default=1, ge=1)
    merges: int = Field(default=4, ge=0, description="merge attempts at most; 0: none")
    patience: int = Field(default=4, ge=1, description="stop after this many rounds with no child")
    max_consecutive_failures: int = Field(default=5, ge=1)
    feedback: bool = Field(default=True, description="show the judge's feedback to the reflector")
    seed: int = 0

    @model_validator(mode="after")
    def _bounded(self) -> PromptOptConfig:
        if self.budget is None and self.generations is None:
            raise ValueError("give a budget, a number of generations, or both")
        return self

    def conversation_calls(self) -> int:
        """LLM calls one conversation may make: a user and an assistant call per turn, and
        the judge."""
        return 2 * self.turns + 1

    def check_budget(self, dummies: int, seeds: int) -> None:
        """Refuse a budget too small to score the seed prompts."""
        need = seeds * dummies * self.repeats * self.conversation_calls()
        if self.budget is not None and self.budget < need:
            raise PromptOptInputError(
                f"a budget of {self.budget} LLM calls is below the {need} that scoring "
                f"{seeds} seed prompt(s) on {dummies} dummies needs; raise the budget"
            )

    def proposal_calls(self, dummies: int) -> int:
        """The worst case of one proposal: the rewrite, then a full evaluation."""
        return 1 + dummies * self.repeats * self.conversation_calls()

    def budget_plan(self, dummies: int, seeds: int) -> str:
        """In words: what the seeds' evaluation and each round may cost, and how many rounds
        the budget allows at least."""
        conv = self.conversation_calls()
        seed_calls = seeds * dummies * self.repeats * conv
        per = self.proposal_calls(dummies)
        merge = 1 if self.merges else 0
        round_calls = (self.proposals + merge) * per
        gate = min(self.minibatch, dummies) * self.repeats * conv
        lines = [
            f"one conversation: up to {conv} LLM calls ({self.turns} turns of a user and an "
            "assistant call, then the judge)",
            f"generation 1 (the seed prompts): {seeds} x {dummies} dummies x {self.repeats} "
            f"repeat(s) = {seed_calls // conv} conversations, {seed_calls} calls",
            f"each later round: up to {self.proposals} rewrite(s)"
            + (" and 1 merge" if merge else "")
            + ", each 1 call plus "
            + (
                f"{gate} on its minibatch and up to {per - 1 - gate} more if it passes"
                if self.mode == "gepa"
                else f"{per - 1} to score it on every dummy"
            )
            + f": at most {round_calls} calls per round",
        ]
        if self.budget is not None:
            rounds = (self.budget - seed_calls) // round_calls if round_calls else 0
            lines.append(
                f"budget {self.budget} calls: {self.budget - seed_calls} after generation 1, "
                f"at least {rounds} full round(s); a round starts only if its worst case fits"
            )
        if self.generations is not None:
            lines.append(f"at most {self.generations} generations")
        return "\n".join(lines)


@dataclass
class Conversation:
    """One evaluation of a candidate on a dummy (one repeat)."""

    key: str
    candidate: str
    dummy: str
    repeat: int
    messages: list[Message] = field(default_factory=list)
    score: float | None = None
    feedback: str | None = None
    error: str | None = None
    done: bool = False
    calls: int = 0

    @property
    def turns(self) -> int:
        return sum(m["role"] == "assistant" for m in self.messages)


@dataclass
class Candidate:
    """A system prompt in the search: where it came from and how it fared."""

    id: str
    text: str
    parents: tuple[str, ...]
    generation: int
    kind: Literal["seed", "reflect", "merge"]
    stage: Literal["minibatch", "full", "done"] = "full"
    gate: tuple[str, ...] = ()
    conversations: dict[str, list[str]] = field(default_factory=dict)
    accepted: bool | None = None
    why: str = ""


@dataclass(frozen=True)
class Proposal:
    """A rewrite to ask for: of one parent (reflect) or of two (merge), gated on ``gate``."""

    kind: Literal["reflect", "merge"]
    parents: tuple[str, ...]
    gate: tuple[str, ...]
    evidence: tuple[str, ...]
    key: str
    variant: int = 0
    variants: int = 1


class RoundProgress(BaseModel):
    """Where the pool stood at the end of a round."""

    round: int
    best: float
    mean: float
    front: int
    accepted: int
    calls: int


@dataclass
class Phase:
    """One stretch of work between two decisions, for the wall-time bound: its LLM calls
    and its longest chain of calls that must run one after another."""

    kind: Literal["evaluate", "reflect"]
    calls: int
    chain: int


class OptState:
    """Everything the nodes share; created by the flow's first node."""

    def __init__(self, config: PromptOptConfig, dummies: Sequence[Dummy], seeds: Sequence[str]):
        self.config = config
        self.dummies = {d.id: d for d in dummies}
        self.rng = random.Random(config.seed)
        self.candidates: dict[str, Candidate] = {}
        self.conversations: dict[str, Conversation] = {}
        self.queue: list[str] = []
        self.pass_keys: list[str] = []
        self.proposals: list[Proposal] = []
        self.rejected: dict[str, list[str]] = {}
        self.calls: Counter[str] = Counter()
        self.progress: list[RoundProgress] = []
        self.phases: list[Phase] = []
        self.notes: list[str] = []
        self.round = 1
        self.idle_rounds = 0
        self.merges_left = config.merges
        self.merged: set[frozenset[str]] = set()
        self.failures_in_a_row = 0
        self.stop_reason = ""
        self._cycle: list[str] = []
        self._accepted_this_round = 0
        config.check_budget(len(dummies), len(seeds))
        for text in seeds:
            self.add_candidate(text, (), "seed")

    # -- candidates and conversations ----------------------------------------------------

    def add_candidate(
        self,
        text: str,
        parents: tuple[str, ...],
        kind: Literal["seed", "reflect", "merge"],
        gate: tuple[str, ...] = (),
    ) -> Candidate:
        """Record a new candidate and queue its conversations: on the dummies of ``gate``
        first when it has one, else on every dummy. A prompt already tried is not run again."""
        cid = f"c{len(self.candidates) + 1}"
        twin = next((c.id for c in self.candidates.values() if c.text == text), None)
        cand = Candidate(cid, text, parents, self.round, kind, "minibatch" if gate else "full")
        self.candidates[cid] = cand
        if twin is not None:
            cand.stage, cand.accepted = "done", False
            cand.why = f"same text as {twin}; not evaluated"
            return cand
        cand.gate = gate
        self.queue_conversations(cand, gate or tuple(self.dummies))
        return cand

    def queue_conversations(self, cand: Candidate, dummies: Sequence[str]) -> None:
        for dummy in dummies:
            for repeat in range(self.config.repeats):
                key = conversation_key(cand.text, self.dummies[dummy], repeat)
                self.conversations[key] = Conversation(key, cand.id, dummy, repeat)
                cand.conversations.setdefault(dummy, []).append(key)
                self.queue.append(key)

    def take_queue(self) -> list[str]:
        queued, self.queue = self.queue, []
        return queued

    def scores(self, cid: str) -> dict[str, float | None]:
        """A candidate's score per dummy: the mean of its successful repeats, None when
        every repeat errored."""
        out: dict[str, float | None] = {}
        for dummy, keys in self.candidates[cid].conversations.items():
            done = [s for k in keys if (s := self.conversations[k].score) is not None]
            out[dummy] = sum(done) / len(done) if done else None
        return out

    def pool(self) -> dict[str, dict[str, float | None]]:
        """Score tables of the accepted candidates (the pool Pareto selection draws from)."""
        return {c.id: self.scores(c.id) for c in self.candidates.values() if c.accepted}

    def best(self) -> Candidate | None:
        """The accepted candidate with the highest mean score (the earliest among equals)."""
        ranked = [(mean_score(s) or 0.0, -int(cid[1:]), cid) for cid, s in self.pool().items()]
        return self.candidates[max(ranked)[2]] if ranked else None

    # -- evaluation results --------------------------------------------------------------

    def finish_conversation(self, conv: Conversation) -> None:
        """A conversation ended (judged or errored); raise after too many errors in a row."""
        conv.done = True
        if conv.error is None:
            self.failures_in_a_row = 0
            return
        self.failures_in_a_row += 1
        limit = self.config.max_consecutive_failures
        if self.failures_in_a_row >= limit:
            raise TooManyFailuresError(
                f"{limit} conversations failed in a row; the last: candidate {conv.candidate} "
                f"with dummy {conv.dummy!r}: {conv.error}. Check the endpoint, model and key, "
                "lower the concurrency or rpm, or raise the attempts per call; finished "
                "conversations are stored, so --resume RUN_ID continues from them"
            )

    def record_evaluation_phase(self, keys: Sequence[str]) -> None:
        convs = [self.conversations[k] for k in keys]
        calls = [c.calls for c in convs]
        if calls:
            self.phases.append(Phase("evaluate", sum(calls), max(calls)))

    def record_rewrite_phase(self, calls: int) -> None:
        if calls:
            self.phases.append(Phase("reflect", calls, 1))

    def decide(self) -> None:
        """Settle every candidate whose queued conversations have all ended."""
        for cand in self.candidates.values():
            if cand.stage == "done" or not all(
                self.conversations[k].done for keys in cand.conversations.values() for k in keys
            ):
                continue
            if cand.stage == "minibatch":
                decision = self._compare(cand, cand.gate)
                if decision.accepted:
                    cand.stage, cand.why = "full", f"passed its minibatch: {decision.why}"
                    rest = [d for d in self.dummies if d not in cand.gate]
                    self.queue_conversations(cand, rest)
                    if rest:
                        continue
                else:
                    self._reject(cand, decision)
                    continue
            if cand.kind == "seed":
                cand.accepted, cand.why = True, "seed prompt"
            elif cand.gate:
                cand.accepted = True
            else:
                decision = self._compare(cand, tuple(self.dummies))
                if not decision.accepted:
                    self._reject(cand, decision)
                    continue
                cand.accepted, cand.why = True, decision.why
            cand.stage = "done"
            if cand.kind != "seed":
                self._accepted_this_round += 1

    def _compare(self, cand: Candidate, dummies: Sequence[str]) -> Decision:
        parents = [self.scores(p) for p in cand.parents]
        return accept(self.scores(cand.id), parents, dummies, merge=cand.kind == "merge")

    def _reject(self, cand: Candidate, decision: Decision) -> None:
        cand.stage, cand.accepted, cand.why = "done", False, decision.why
        if cand.kind == "reflect":
            parent = self.candidates[cand.parents[0]]
            old = {line.strip() for line in parent.text.splitlines()}
            added = [line.strip().lstrip("-* ").strip() for line in cand.text.splitlines()]
            changes = [f"added: {line}" for line in added if line and f"- {line}" not in old]
            self.rejected.setdefault(parent.id, []).append(
                " | ".join([*changes, f"why: {decision.why}"])
            )

    # -- rounds --------------------------------------------------------------------------

    def end_round(self) -> bool:
        """Record the round's progress; True when the optimisation should stop."""
        pool = self.pool()
        means = [mean_score(s) or 0.0 for s in pool.values()]
        self.progress.append(
            RoundProgress(
                round=self.round,
                best=max(means, default=0.0),
                mean=sum(means) / len(means) if means else 0.0,
                front=len(pareto_front(pool)),
                accepted=self._accepted_this_round,
                calls=sum(self.calls.values()),
            )
        )
        self.idle_rounds = (
            0 if self._accepted_this_round or self.round == 1 else self.idle_rounds + 1
        )
        self._accepted_this_round = 0
        best = self.best()
        if best is None:
            self.stop_reason = "no seed conversation succeeded"
        elif all(v == 1.0 for v in self.scores(best.id).values()):
            self.stop_reason = f"{best.id} meets every need of every dummy"
        elif self.config.generations is not None and self.round >= self.config.generations:
            self.stop_reason = f"{self.round} generations done"
        elif self.idle_rounds >= self.config.patience:
            self.stop_reason = f"no child accepted for {self.idle_rounds} rounds"
        return bool(self.stop_reason)

    def plan_round(self) -> bool:
        """Plan the next round's proposals within the budget; False when none fits."""
        config, pool = self.config, self.pool()
        afford = config.proposals + 1
        if config.budget is not None:
            per = config.proposal_calls(len(self.dummies))
            afford = min(afford, (config.budget - sum(self.calls.values())) // per)
        if afford < 1:
            self.stop_reason = "budget spent"
            return False
        self.round += 1
        m = min(config.minibatch, len(self.dummies))
        proposals = []
        parent = select_parent(pool, self.rng)
        for n in range(min(config.proposals, afford)):
            key = f"r{self.round}p{n}"
            if config.mode == "generational":
                parent = parent if n == 0 else select_parent(pool, self.rng)
                shown = self.next_minibatch(m)
                proposals.append(Proposal("reflect", (parent,), (), shown, key))
                continue
            gate = self.next_minibatch(m)
            if all(pool[parent].get(d) == 1.0 for d in gate):
                self.notes.append(f"round {self.round}: {parent} is perfect on {', '.join(gate)}")
                continue
            proposals.append(Proposal("reflect", (parent,), gate, gate, key))
        pair = self._merge_pair(pool) if self.merges_left else None
        if pair is not None and len(proposals) < afford:
            self.merges_left -= 1
            self.merged.add(frozenset(pair))
            gate = self.next_minibatch(m)
            proposals.append(Proposal("merge", pair, gate, gate, f"r{self.round}m"))
        siblings = Counter(p.parents for p in proposals)
        seen: Counter[tuple[str, ...]] = Counter()
        self.proposals = []
        for p in proposals:
            self.proposals.append(replace(p, variant=seen[p.parents], variants=siblings[p.parents]))
            seen[p.parents] += 1
        return True

    def next_minibatch(self, size: int) -> tuple[str, ...]:
        """The next ``size`` dummies of a shuffled cycle through all of them (reshuffled
        each time round), so every dummy is seen as often as any other."""
        batch: list[str] = []
        while len(batch) < size:
            if not self._cycle:
                self._cycle = list(self.dummies)
                self.rng.shuffle(self._cycle)
            nxt = self._cycle.pop(0)
            if nxt not in batch:
                batch.append(nxt)
        return tuple(batch)

    def _merge_pair(self, pool: dict[str, dict[str, float | None]]) -> tuple[str, str] | None:
        front = list(pareto_front(pool))
        pairs = [
            (a, b)
            for i, a in enumerate(front)
            for b in front[i + 1 :]
            if frozenset((a, b)) not in self.merged
        ]
        return self.rng.choice(pairs) if pairs else None

    def evidence(self, parent: str, dummies: Sequence[str]) -> list[Conversation]:
        """The parent's first successful conversation on each of ``dummies``."""
        found = []
        for dummy in dummies:
            for key in self.candidates[parent].conversations.get(dummy, []):
                conv = self.conversations[key]
                if conv.score is not None:
                    found.append(conv)
                    break
        return found


def conversation_key(prompt: str, dummy: Dummy, repeat: int) -> str:
    """A stable name for one conversation: the prompt, the dummy and the repeat, hashed."""
    text = json.dumps([prompt, dummy.model_dump(mode="json"), repeat], sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
