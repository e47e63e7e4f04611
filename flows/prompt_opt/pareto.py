"""Pareto selection and acceptance over per-dummy score tables, as GEPA does them.

A score table maps each candidate to its score on each dummy; a missing or None score is a
conversation that errored, which counts for nothing (neither a win nor a zero).

- ``pareto_front``: for every dummy, the candidates with its best score; candidates that are
  best nowhere, or best only where another surviving candidate is also best (dominated), are
  removed. Each survivor is weighted by how many dummies it is best on.
- ``select_parent``: one draw from the front, with probability proportional to that weight.
- ``accept``: a child joins the pool only if it beats its parent on the dummies both scored.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Scores = Mapping[str, float | None]
"""One candidate's score per dummy id (None: every conversation on that dummy errored)."""
Table = Mapping[str, Scores]
"""Score tables: candidate id -> its scores."""


def mean_score(scores: Scores, dummies: Iterable[str] | None = None) -> float | None:
    """The mean of the scores that exist (over ``dummies`` only, when given); None if none."""
    keys = scores.keys() if dummies is None else dummies
    values = [v for k in keys if (v := scores.get(k)) is not None]
    return sum(values) / len(values) if values else None


def winners(table: Table) -> dict[str, set[str]]:
    """For each dummy that some candidate scored, the candidates with the best score there."""
    best: dict[str, float] = {}
    for scores in table.values():
        for dummy, value in scores.items():
            if value is not None and value > best.get(dummy, float("-inf")):
                best[dummy] = value
    return {
        dummy: {cid for cid, scores in table.items() if scores.get(dummy) == top}
        for dummy, top in best.items()
    }


def pareto_front(table: Table) -> dict[str, int]:
    """The non-dominated candidates, each with the number of dummies it is best on.

    Candidates are considered from the lowest mean score up (ties: the later id first); one
    is dropped when every dummy it is best on has another surviving best candidate, so of two
    candidates with equal scores everywhere only one (the earlier id) stays.
    """
    best = winners(table)
    alive: set[str] = set().union(*best.values()) if best else set()
    lowest_first = sorted(
        alive, key=lambda cid: (mean_score(table[cid]) or 0.0, -_order_key(cid)[0], cid)
    )
    for cid in lowest_first:
        fronts = [members for members in best.values() if cid in members]
        if all(len(members & alive) > 1 for members in fronts):
            alive.discard(cid)
    return {
        cid: sum(cid in members for members in best.values())
        for cid in sorted(alive, key=_order_key)
    }


def select_parent(table: Table, rng: random.Random) -> str:
    """One candidate drawn from the Pareto front, weighted by the dummies it is best on."""
    front = pareto_front(table)
    if not front:
        raise ValueError("no candidate has a score yet: nothing to select from")
    ids = list(front)
    return rng.choices(ids, weights=[front[cid] for cid in ids])[0]


@dataclass(frozen=True)
class Decision:
    """Whether a child joins the pool, with the scores compared and why, in words."""

    accepted: bool
    child: float | None
    parent: float | None
    why: str


def accept(
    child: Scores, parents: Sequence[Scores], dummies: Iterable[str], *, merge: bool = False
) -> Decision:
    """Compare a child with its parent(s) on ``dummies``, counting only dummies all scored.

    A mutation must beat its parent (strictly); a merge must be at least as good as the
    better of its two parents. A child with no dummy in common with its parents is refused.
    """
    shared = [
        d
        for d in dummies
        if child.get(d) is not None and all(p.get(d) is not None for p in parents)
    ]
    if not shared:
        return Decision(False, None, None, "no conversation on these dummies succeeded")
    mine = mean_score(child, shared)
    theirs = max(mean_score(p, shared) or 0.0 for p in parents)
    assert mine is not None
    where = f"on {len(shared)} dummies"
    if merge:
        ok = mine >= theirs
        verdict = "at least as good as" if ok else "below"
        return Decision(
            ok, mine, theirs, f"{mine:.3f} {where}, {verdict} the better parent's {theirs:.3f}"
        )
    ok = mine > theirs
    verdict = "beats" if ok else "does not beat"
    return Decision(ok, mine, theirs, f"{mine:.3f} {where} {verdict} the parent's {theirs:.3f}")


def _order_key(cid: str) -> tuple[int, str]:
    """Candidate ids like ``c12`` sort by number; others after them, by text."""
    digits = cid.lstrip("c")
    return (int(digits), cid) if digits.isdigit() else (1 << 62, cid)
