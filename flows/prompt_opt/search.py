"""The search, round by round: which proposals to make, how each is gated, when to stop.

A round plans its proposals (see ``flows.prompt_opt.config`` for the loop and its named
departures from gepa), then moves each one through its stages as the flow's evaluations
and rewrites finish::

    reflect:     parent runs on a minibatch ─► rewrite ─► child runs there ─► validation
    llm-merge:   rewrite ─► child runs on rows where the parents differ ─► validation
    crossover:   child runs on up to 5 validation rows ─► validation

When the search stops, the finalists may be scored again on validation, the best is named,
and the best and the seeds are scored once on the test rows.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from flows.prompt_opt.budget import Budget, StopSwitch
from flows.prompt_opt.config import PromptOptConfig
from flows.prompt_opt.data import MinibatchSampler, Splits
from flows.prompt_opt.events import (
    BestChanged,
    Callbacks,
    CandidateAccepted,
    CandidateProposed,
    CandidateRejected,
    OptimisationEnded,
    RoundEnded,
)
from flows.prompt_opt.merge import order, plan_merge
from flows.prompt_opt.pareto import accept, mean_score, pareto_front, select_parent
from flows.prompt_opt.prompts import rejected_line
from flows.prompt_opt.state import PERFECT, Candidate, Evaluation, Kind, Pool
from flows.prompt_opt.task import Task

Prices = Mapping[str, tuple[float, float]]
"""Dollars per million prompt and completion tokens, by role (or client) name."""
Stage = Literal["parent", "rewrite", "gate", "score", "done"]
Phase = Literal["seeds", "search", "rescore", "test", "done"]


@dataclass
class Proposal:
    """One child in the making: how it is made, from whom, gated on which rows."""

    key: str
    kind: Kind
    parents: tuple[str, ...]
    rows: tuple[str, ...]
    stage: Stage
    component: str | None = None
    merge_components: tuple[str, ...] = ()
    parent_runs: dict[str, list[str]] = field(default_factory=dict)
    child: str | None = None
    child_runs: list[str] = field(default_factory=list)
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
    cost: float
    elapsed: float


class OptState:
    """Everything the flow's nodes share; created by the flow's first node."""

    def __init__(
        self,
        config: PromptOptConfig,
        task: Task,
        splits: Splits[Any],
        seeds: Sequence[Mapping[str, str]],
        *,
        in_flight: int | None = None,
        prices: Prices | None = None,
        callbacks: Callbacks | None = None,
        stop: StopSwitch | None = None,
    ) -> None:
        self.config, self.task = config, task
        self.train = tuple(task.row_id(r) for r in splits.train)
        self.val = tuple(task.row_id(r) for r in splits.val)
        self.test = tuple(task.row_id(r) for r in splits.test)
        self.splits = splits
        all_rows = {task.row_id(r): r for r in (*splits.train, *splits.val, *splits.test)}
        self.pool = Pool(
            all_rows, {k: task.row_data(r) for k, r in all_rows.items()}, config.repeats
        )
        self.pool.max_failures_in_a_row = config.max_consecutive_failures
        self.per_eval = task.calls_per_evaluation()
        self.n_proposals = config.proposals_for(in_flight)
        self.prices = dict(prices or {})
        self.events = callbacks or Callbacks()
        self.stop = stop or StopSwitch()
        self.rng = random.Random(config.seed)
        self.round = 1
        self.phase: Phase = "seeds"
        self.proposals: list[Proposal] = []
        self.progress: list[RoundProgress] = []
        self.notes: list[str] = []
        self.stop_reason = ""
        self.best_id: str | None = None
        self.best_before = float("-inf")
        self.idle_rounds = 0
        self.accepted_this_round = 0
        self.merge_due = False
        self.merges_left = config.merges if config.merging() else 0
        self.tried_pairs: set[frozenset[str]] = set()
        self.tried_triplets: set[tuple[str, str, str]] = set()
        self.rejected: dict[tuple[str, str], list[str]] = {}
        self.next_component: Counter[str] = Counter()
        self.rescored: list[str] = []
        self.tested: list[str] = []
        self.sampler = MinibatchSampler(self.train, self.rng)
        self.budget = Budget(config, self.pool, self.prices, self.stop, self.per_eval, splits)
        self._round_start = self.stop.elapsed()
        self._perfect: set[str] = set()
        for components in seeds:
            cand = self.pool.add(components, (), 1, "seed")
            if cand.status == "rejected":
                continue
            cand.status = "scoring"
            self.pool.queue_runs(cand.id, self.val, "val", "r1")

    # -- moving on -------------------------------------------------------------------------

    def advance(self) -> Literal["step", "done"]:
        """Settle what the finished evaluations and rewrites decide; "step" when there are
        evaluations or rewrites to run next (they run together), "done" at the end."""
        while True:
            if self.pool.queue or any(p.stage == "rewrite" for p in self.proposals):
                return "step"
            if self.phase == "seeds":
                for cand in self.pool.candidates.values():
                    if cand.status == "scoring":
                        cand.status, cand.why = "accepted", "seed"
                self._check_best()
                self.end_round()
            elif self.phase == "search":
                for proposal in self.proposals:
                    self._step(proposal)
                if self.pool.queue or any(p.stage == "rewrite" for p in self.proposals):
                    return "step"
                if self.proposals:
                    self.proposals = []
                    self.end_round()
                elif not self.plan_round():
                    self.wrap_up()
            elif self.phase == "rescore":
                self._check_best()
                self._start_test()
            else:
                if self.phase == "test":
                    self._finished()
                return "done"

    def _where(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "calls": self.pool.attempts(),
            "cost": self.pool.cost(self.prices),
            "elapsed": self.stop.elapsed(),
        }

    # -- planning a round ------------------------------------------------------------------

    def plan_round(self) -> bool:
        """Plan the next round's proposals; False (with a stop reason) when none may run."""
        reserve = self._end_reserve()
        self._perfect.clear()
        why = self.stop.requested() or self.budget.out_of_time()
        proposals = 0 if why is not None else self.n_proposals
        while proposals and not self.budget.round_fits(proposals, reserve):
            proposals -= 1
        if why is None and not proposals:
            why = self.budget.why_no_room(reserve)
        if why is not None:
            self.stop_reason = why
            return False
        self.round += 1
        table = self.pool.table(self.val)
        planned: list[Proposal] = []
        if self.merge_due and self.merges_left > 0:
            merge = self._plan_merge(table, f"r{self.round}m")
            if merge is not None:
                self.merges_left -= 1
                planned.append(merge)
        self.merge_due = False
        for n in range(0 if planned else proposals):  # a merge takes its round, as in gepa
            reflect = self._plan_reflect(table, f"r{self.round}p{n}")
            if reflect is not None:
                planned.append(reflect)
        if not planned:
            self.round -= 1
            drawn = sorted(self._perfect, key=order)
            self.stop_reason = (
                f"no proposal possible: {', '.join(drawn)} "
                f"{'is' if len(drawn) == 1 else 'are'} perfect on every training row"
            )
            return False
        siblings = Counter((p.parents, p.component) for p in planned if p.kind == "reflect")
        seen: Counter[tuple[tuple[str, ...], str | None]] = Counter()
        for p in planned:
            if p.kind == "reflect":
                p.variant, p.variants = (
                    seen[(p.parents, p.component)],
                    siblings[(p.parents, p.component)],
                )
                seen[(p.parents, p.component)] += 1
        self._queue_parent_runs(planned)
        self.proposals = planned
        return True

    def _rescoring(self) -> bool:
        rescore = self.config.rescore
        return rescore == "always" or (rescore == "auto" and self.pool.noisy)

    def _end_reserve(self) -> int:
        """Calls kept for the end: the finalists' re-score (when it will run) and the test."""
        accepted = sum(c.accepted for c in self.pool.candidates.values())
        finalists = min(self.config.finalists, accepted + self.n_proposals)
        rescore = finalists * len(self.val) * self.config.repeats * self.per_eval
        return self._test_reserve() + (rescore if self._rescoring() and finalists > 1 else 0)

    def _test_reserve(self) -> int:
        seeds = sum(c.kind == "seed" and c.accepted for c in self.pool.candidates.values())
        return (1 + seeds) * len(self.test) * self.config.repeats * self.per_eval

    def _plan_reflect(self, table: Mapping[str, Any], key: str) -> Proposal | None:
        parent = select_parent(table, self.rng)
        components = list(self.pool.candidates[parent].components)
        component = components[self.next_component[parent] % len(components)]
        self.next_component[parent] += 1
        rows = self._minibatch(parent)
        if not rows:
            self._perfect.add(parent)
            return None
        proposal = Proposal(key, "reflect", (parent,), rows, "parent", component=component)
        if self.config.mode == "generational":
            latest = [self.pool.latest(parent, r) for r in rows]
            if all(ev is not None for ev in latest):
                proposal.parent_runs = {
                    r: [ev.key] for r, ev in zip(rows, latest, strict=True) if ev
                }
                proposal.stage = "rewrite"
        return proposal

    def _minibatch(self, parent: str) -> tuple[str, ...]:
        size = min(self.config.minibatch, len(self.train))
        if self.config.sampler == "unsolved":
            return self.sampler.next(size, skip=lambda row: self._solved(parent, row))
        return self.sampler.next(size)

    def _solved(self, cid: str, row: str) -> bool:
        ev = self.pool.latest(cid, row)
        return ev is not None and ev.error is None and (ev.score or 0.0) >= PERFECT

    def _queue_parent_runs(self, planned: Sequence[Proposal]) -> None:
        """Fresh runs of each reflect proposal's parent on its minibatch; two proposals of
        one parent share the runs on the rows they share."""
        made: dict[tuple[str, str], list[str]] = {}
        for p in planned:
            if p.stage != "parent":
                continue
            for row in p.rows:
                at = (p.parents[0], row)
                if at not in made:
                    made[at] = self.pool.queue_runs(at[0], [row], "gate", f"r{self.round}")
                p.parent_runs[row] = made[at]

    def _plan_merge(self, table: Mapping[str, Any], key: str) -> Proposal | None:
        comps = {cid: self.pool.candidates[cid].components for cid in table}
        plan = plan_merge(
            self.config.merge,
            self.config.merge_width,
            table,
            comps,
            self.pool.ancestors,
            self.tried_triplets,
            self.tried_pairs,
            self.rng,
        )
        if plan is None:
            return None
        if plan.child is not None:
            proposal = Proposal(key, "crossover", plan.parents, plan.rows, "gate")
            self._new_child(proposal, plan.child, None)
            return proposal
        return Proposal(
            key, "llm-merge", plan.parents, plan.rows, "rewrite", merge_components=plan.components
        )

    # -- a proposal's stages ---------------------------------------------------------------

    def _step(self, p: Proposal) -> None:
        if p.stage == "parent":
            runs = [self.pool.evaluations[k] for keys in p.parent_runs.values() for k in keys]
            perfect = all(ev.error is None and (ev.score or 0.0) >= PERFECT for ev in runs)
            if self.config.skip_perfect and perfect:
                p.stage = "done"
                self.notes.append(
                    f"round {self.round}: {p.parents[0]} is perfect on {', '.join(p.rows)}; "
                    "no rewrite"
                )
            else:
                p.stage = "rewrite"
        elif p.stage == "gate":
            self._decide_gate(p)
        elif p.stage == "score":
            self._decide_score(p)

    def rewrites_done(self, made: Mapping[str, Mapping[str, str | None]]) -> None:
        """The reflector's (or merger's) new texts, by proposal key and component (None:
        the call failed or gave nothing); children are created and queued."""
        for p in self.proposals:
            if p.stage != "rewrite":
                continue
            texts = made.get(p.key, {})
            if not texts or any(not t for t in texts.values()):
                p.stage = "done"
                self.notes.append(
                    f"round {self.round}: {p.kind} of {', '.join(p.parents)} gave no text"
                )
                continue
            base = dict(self.pool.candidates[p.parents[0]].components)
            base.update({name: text for name, text in texts.items() if text})
            self._new_child(p, base, p.component)

    def _new_child(self, p: Proposal, components: Mapping[str, str], component: str | None) -> None:
        child = self.pool.add(components, p.parents, self.round, p.kind, component)
        p.child = child.id
        self.events.emit(
            CandidateProposed(
                **self._where(),
                candidate=child.id,
                how=p.kind,
                parents=p.parents,
                component=component,
                components=dict(child.components),
            )
        )
        if child.status == "rejected":
            p.stage = "done"
            self._rejected(child, p, child.why)
            return
        if self.config.mode == "generational" and p.kind == "reflect":
            child.status, p.stage = "scoring", "score"
            self.pool.queue_runs(child.id, self.val, "val", f"r{self.round}")
            return
        child.status, p.stage = "gate", "gate"
        p.child_runs = self.pool.queue_runs(child.id, p.rows, "gate", f"r{self.round}")

    def _row_means(self, keys: Sequence[str], rows: Sequence[str]) -> list[float]:
        by_row: dict[str, list[float]] = {}
        for key in keys:
            ev = self.pool.evaluations[key]
            by_row.setdefault(ev.row, []).append(ev.value)
        return [sum(by_row[r]) / len(by_row[r]) for r in rows if r in by_row]

    def _decide_gate(self, p: Proposal) -> None:
        assert p.child is not None
        child = self.pool.candidates[p.child]
        mine = self._row_means(p.child_runs, p.rows)
        failed = sum(self.pool.evaluations[k].error is not None for k in p.child_runs)
        if p.kind == "reflect":
            keys = [k for r in p.rows for k in p.parent_runs[r]]
            failed += sum(self.pool.evaluations[k].error is not None for k in keys)
            parents = [self._row_means(keys, p.rows)]
        else:
            table = self.pool.table(self.val)
            parents = [[table[q].get(r) or 0.0 for r in p.rows] for q in p.parents]
        decision = accept(
            mine,
            parents,
            merge=p.kind != "reflect",
            failed=failed,
            require_all=self.config.failures == "require",
        )
        child.gate = (decision.parent, decision.child)
        if not decision.accepted:
            child.status, child.why, p.stage = "rejected", decision.why, "done"
            self._rejected(child, p, decision.why)
            return
        child.status, child.why, p.stage = "scoring", f"passed its gate: {decision.why}", "score"
        self.pool.queue_runs(child.id, self.val, "val", f"r{self.round}")

    def _decide_score(self, p: Proposal) -> None:
        assert p.child is not None
        child = self.pool.candidates[p.child]
        score = mean_score(self.pool.val_scores(child.id, self.val)) or 0.0
        if self.config.mode == "generational" and p.kind == "reflect":
            before = mean_score(self.pool.val_scores(p.parents[0], self.val)) or 0.0
            child.gate = (before, score)
            if score <= before:
                why = f"validation mean {score:.3f} does not beat the parent's {before:.3f}"
                child.status, child.why, p.stage = "rejected", why, "done"
                self._rejected(child, p, why)
                return
            child.why = f"validation mean {score:.3f} beats the parent's {before:.3f}"
        child.status, p.stage = "accepted", "done"
        self.accepted_this_round += 1
        self.events.emit(
            CandidateAccepted(
                **self._where(),
                candidate=child.id,
                how=child.kind,
                parents=child.parents,
                gate_before=child.gate[0],
                gate_after=child.gate[1],
                val_score=score,
            )
        )
        self._check_best()

    def _rejected(self, child: Candidate, p: Proposal, why: str) -> None:
        if p.kind == "reflect" and p.component is not None:
            old = self.pool.candidates[p.parents[0]].components[p.component]
            line = rejected_line(old, child.components[p.component], why)
            self.rejected.setdefault((p.parents[0], p.component), []).append(line)
        self.events.emit(
            CandidateRejected(
                **self._where(),
                candidate=child.id,
                how=child.kind,
                parents=child.parents,
                reason=why,
                gate_before=child.gate[0],
                gate_after=child.gate[1],
            )
        )

    def evidence(self, p: Proposal) -> list[Evaluation]:
        """What the reflector is shown for ``p``: its parent's first run on each row."""
        return [self.pool.evaluations[p.parent_runs[r][0]] for r in p.rows if r in p.parent_runs]

    # -- rounds and the end ----------------------------------------------------------------

    def _check_best(self) -> None:
        best = self.pool.best(self.val)
        if best is not None and best.id != self.best_id:
            self.best_id = best.id
            score = mean_score(self.pool.val_scores(best.id, self.val)) or 0.0
            self.events.emit(
                BestChanged(
                    **self._where(),
                    candidate=best.id,
                    score=score,
                    components=dict(best.components),
                )
            )

    def end_round(self) -> None:
        """Record the round; decide whether the search stops."""
        table = self.pool.table(self.val)
        means = [mean_score(s) or 0.0 for s in table.values()]
        best = self.pool.best(self.val)
        best_mean = mean_score(self.pool.val_scores(best.id, self.val)) or 0.0 if best else 0.0
        now = self.stop.elapsed()
        self.budget.round_times.append(now - self._round_start)
        self._round_start = now
        self.progress.append(
            RoundProgress(
                round=self.round,
                best=best_mean,
                mean=sum(means) / len(means) if means else 0.0,
                front=len(pareto_front(table)),
                accepted=self.accepted_this_round,
                calls=self.pool.attempts(),
                cost=self.pool.cost(self.prices),
                elapsed=now,
            )
        )
        improved = best_mean > self.best_before + 1e-12
        self.idle_rounds = 0 if improved or self.round == 1 else self.idle_rounds + 1
        self.best_before = max(self.best_before, best_mean)
        self.merge_due = self.accepted_this_round > 0
        self.events.emit(
            RoundEnded(
                **self._where(),
                best=best.id if best else None,
                best_score=best_mean,
                front=len(pareto_front(table)),
                accepted=self.accepted_this_round,
            )
        )
        self.accepted_this_round = 0
        self.phase = "search"
        config = self.config
        if best is None:
            self.stop_reason = "no seed candidate could be scored"
        elif all(
            ev.value >= PERFECT
            for r in self.val
            for ev in self.pool.done_runs(best.id, r, ("val", "rescore"))
        ):
            self.stop_reason = f"{best.id} meets every need on every validation row"
        elif config.generations is not None and self.round >= config.generations:
            self.stop_reason = f"{self.round} generations done"
        elif self.idle_rounds >= config.patience:
            self.stop_reason = f"no better best for {self.idle_rounds} rounds"
        elif (why := self.stop.requested()) is not None:
            self.stop_reason = why
        if self.stop_reason:
            self.wrap_up()

    def wrap_up(self) -> None:
        """The search is over: re-score the finalists when asked (or when the judge proved
        noisy), then test."""
        config = self.config
        table = self.pool.table(self.val)
        ranked = sorted(table, key=lambda c: (-(mean_score(table[c]) or 0.0), order(c)))
        finalists = ranked[: config.finalists]
        if self._rescoring() and len(finalists) > 1:
            need = len(finalists) * len(self.val) * config.repeats * self.per_eval
            if self.budget.fits(need + self._test_reserve()):
                for cid in finalists:
                    self.pool.queue_runs(cid, self.val, "rescore", "end")
                self.rescored = finalists
                self.phase = "rescore"
                return
            self.notes.append("finalists not re-scored: the budget left does not allow it")
        self._start_test()

    def _start_test(self) -> None:
        best = self.pool.best(self.val)
        self.phase = "test"
        if not self.test or best is None:
            return
        seeds = [c.id for c in self.pool.candidates.values() if c.kind == "seed" and c.accepted]
        tested = [best.id, *(s for s in seeds if s != best.id)]
        need = len(tested) * len(self.test) * self.config.repeats * self.per_eval
        if not self.budget.fits(need):
            self.notes.append("test rows not scored: the budget left does not allow it")
            return
        for cid in tested:
            self.pool.queue_runs(cid, self.test, "test", "end")
        self.tested = tested

    def _finished(self) -> None:
        self.phase = "done"
        best = self.pool.best(self.val)
        score = mean_score(self.pool.val_scores(best.id, self.val)) or 0.0 if best else 0.0
        test = self.test_score(best.id) if best else None
        self.events.emit(
            OptimisationEnded(
                **self._where(),
                best=best.id if best else None,
                best_score=score,
                test_score=test,
                stop_reason=self.stop_reason,
            )
        )

    def test_score(self, cid: str) -> float | None:
        if cid not in self.tested:
            return None
        return mean_score(self.pool.test_scores(cid, self.test))
