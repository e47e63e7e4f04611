"""The pool: candidates, their evaluations, their scores, and what the calls billed.

A candidate is a dict of named text components. An evaluation is one fresh run of a
candidate on a row for one purpose (a minibatch gate, validation, a re-score, the test);
nothing run for one purpose is reused for another, so a child's gate scores never reach its
validation record. Everything here changes only on the event loop, in a fixed order, from
exec results that are stored and restored by key: a resumed run retraces the same pool.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from flows.prompt_opt.pareto import mean_score
from flows.prompt_opt.prompts import Message
from flows.prompt_opt.scenario import TooManyFailuresError
from nodes.llm import Bill, Bills, add_bills

Kind = Literal["seed", "reflect", "llm-merge", "crossover"]
Purpose = Literal["gate", "val", "rescore", "test"]
Status = Literal["new", "gate", "scoring", "accepted", "rejected"]
PERFECT = 1.0
"""A score at or above this meets every need."""


@dataclass
class Evaluation:
    """One run of a candidate on a row: its score, feedback and trace, or its error."""

    key: str
    candidate: str
    row: str
    purpose: Purpose
    tag: str = ""
    """When it was queued: ``r3`` (round 3) or ``end``."""
    messages: list[Message] = field(default_factory=list)
    score: float | None = None
    feedback: str = ""
    trace: str = ""
    error: str | None = None
    done: bool = False
    calls: int = 0

    @property
    def value(self) -> float:
        """The score; a failed evaluation scores 0."""
        return 0.0 if self.error is not None or self.score is None else self.score

    @property
    def turns(self) -> int:
        return sum(m["role"] == "assistant" for m in self.messages)


@dataclass
class Candidate:
    """Named text components, where they came from and how they fared."""

    id: str
    components: dict[str, str]
    parents: tuple[str, ...]
    round: int
    kind: Kind
    component: str | None = None
    status: Status = "new"
    why: str = ""
    runs: dict[str, list[str]] = field(default_factory=dict)
    gate: tuple[float | None, float | None] = (None, None)
    """The parent's and the child's sums on the gate rows."""

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


class Pool:
    """Candidates and evaluations, the queue of evaluations to run, and the billing."""

    def __init__(self, rows: Mapping[str, Any], row_data: Mapping[str, Any], repeats: int):
        self.rows = dict(rows)
        self.row_data = dict(row_data)
        self.repeats = repeats
        self.candidates: dict[str, Candidate] = {}
        self.evaluations: dict[str, Evaluation] = {}
        self.queue: list[str] = []
        self.bills: Bills = {}
        self.answered: Counter[str] = Counter()
        self.noisy = False
        self.failures_in_a_row = 0
        self.max_failures_in_a_row = 5

    # -- candidates ------------------------------------------------------------------------

    def add(
        self,
        components: Mapping[str, str],
        parents: tuple[str, ...],
        round: int,
        kind: Kind,
        component: str | None = None,
    ) -> Candidate:
        """Record a candidate; one with the same components as an earlier one is rejected
        at once, without being run."""
        cid = f"c{len(self.candidates) + 1}"
        cand = Candidate(cid, dict(components), parents, round, kind, component)
        self.candidates[cid] = cand
        twin = next(
            (
                c.id
                for c in self.candidates.values()
                if c.id != cid and c.components == cand.components
            ),
            None,
        )
        if twin is not None:
            cand.status, cand.why = "rejected", f"same text as {twin}; not evaluated"
        return cand

    def queue_runs(self, cid: str, rows: Sequence[str], purpose: Purpose, tag: str) -> list[str]:
        """Queue ``repeats`` fresh runs of ``cid`` on each of ``rows``; return their keys."""
        cand = self.candidates[cid]
        keys = []
        for row in rows:
            for repeat in range(self.repeats):
                key = evaluation_key(
                    cand.components, self.row_data[row], f"{tag}:{purpose}:{repeat}"
                )
                self.evaluations[key] = Evaluation(key, cid, row, purpose, tag)
                cand.runs.setdefault(row, []).append(key)
                self.queue.append(key)
                keys.append(key)
        return keys

    def take_queue(self) -> list[str]:
        queued, self.queue = self.queue, []
        return queued

    def finish(self, ev: Evaluation) -> None:
        """An evaluation ended (scored or failed); raise after too many failures in a row."""
        ev.done = True
        if ev.error is None:
            self.failures_in_a_row = 0
            if ev.score is not None and not self.noisy:
                others = [
                    o.score
                    for o in self.done_runs(ev.candidate, ev.row)
                    if o.key != ev.key and o.score is not None
                ]
                self.noisy = any(abs(s - ev.score) > 1e-9 for s in others)
            return
        self.failures_in_a_row += 1
        limit = self.max_failures_in_a_row
        if self.failures_in_a_row >= limit:
            raise TooManyFailuresError(
                f"{limit} evaluations failed in a row; the last: candidate {ev.candidate} on "
                f"{ev.row!r}: {ev.error}. Check the endpoint, model and key, lower the "
                "concurrency or rpm, or raise the attempts per call; finished calls are "
                "stored, so --resume RUN_ID continues from them"
            )

    def charge(self, name: str, bill: Bill | None) -> None:
        """Add what one call (or one task evaluation) billed, under ``name``."""
        if bill is not None:
            add_bills(self.bills, {name: bill})
            self.answered[name] += bill.answered

    def charge_all(self, bills: Mapping[str, Bill]) -> None:
        for name, bill in bills.items():
            self.charge(name, bill)

    def attempts(self) -> int:
        """LLM requests billed so far: every try, retries and re-asks included."""
        return sum(b.attempts for b in self.bills.values())

    def cost(self, prices: Mapping[str, tuple[float, float]]) -> float:
        """Dollars billed so far, for the names the price table prices."""
        total = 0.0
        for name, bill in self.bills.items():
            price = prices.get(name)
            if price is not None:
                total += (bill.prompt_tokens * price[0] + bill.completion_tokens * price[1]) / 1e6
        return total

    # -- scores ----------------------------------------------------------------------------

    def done_runs(
        self, cid: str, row: str, purposes: Sequence[Purpose] | None = None
    ) -> list[Evaluation]:
        """``cid``'s finished runs on ``row`` (of ``purposes`` only, when given), oldest first."""
        out = []
        for key in self.candidates[cid].runs.get(row, []):
            ev = self.evaluations[key]
            if ev.done and (purposes is None or ev.purpose in purposes):
                out.append(ev)
        return out

    def row_value(self, keys: Sequence[str]) -> float:
        """The mean value of the runs ``keys`` (failed runs count 0)."""
        values = [self.evaluations[k].value for k in keys]
        return sum(values) / len(values) if values else 0.0

    def val_scores(self, cid: str, rows: Sequence[str]) -> dict[str, float | None]:
        """``cid``'s validation score per row: the mean of its validation runs there (first
        and re-scored, failures as 0); None where it has none."""
        out: dict[str, float | None] = {}
        for row in rows:
            runs = self.done_runs(cid, row, ("val", "rescore"))
            out[row] = sum(r.value for r in runs) / len(runs) if runs else None
        return out

    def test_scores(self, cid: str, rows: Sequence[str]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for row in rows:
            runs = self.done_runs(cid, row, ("test",))
            out[row] = sum(r.value for r in runs) / len(runs) if runs else None
        return out

    def latest(self, cid: str, row: str) -> Evaluation | None:
        """``cid``'s most recent finished run on ``row``, of any purpose."""
        runs = self.done_runs(cid, row)
        return runs[-1] if runs else None

    def failures(self, cid: str) -> int:
        """How many of ``cid``'s evaluations failed."""
        return sum(
            self.evaluations[k].error is not None
            for keys in self.candidates[cid].runs.values()
            for k in keys
        )

    def table(self, rows: Sequence[str]) -> dict[str, dict[str, float | None]]:
        """Validation score tables of the accepted candidates (what selection draws from)."""
        return {c.id: self.val_scores(c.id, rows) for c in self.candidates.values() if c.accepted}

    def best(self, rows: Sequence[str]) -> Candidate | None:
        """The accepted candidate with the highest validation mean (the earliest of equals)."""
        ranked = [
            (mean_score(scores) or 0.0, -int(cid[1:]), cid)
            for cid, scores in self.table(rows).items()
        ]
        return self.candidates[max(ranked)[2]] if ranked else None

    def ancestors(self, cid: str) -> set[str]:
        """Every candidate ``cid`` descends from."""
        found: set[str] = set()
        todo = list(self.candidates[cid].parents)
        while todo:
            parent = todo.pop()
            if parent not in found:
                found.add(parent)
                todo.extend(self.candidates[parent].parents)
        return found


def evaluation_key(components: Mapping[str, str], row: Any, tag: str) -> str:
    """A stable name for one run: the candidate's text, the row's content and the tag
    (round, purpose, repeat), hashed; a resumed run finds its stored calls under it."""
    text = json.dumps([dict(components), row, tag], sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
