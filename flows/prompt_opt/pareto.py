"""Pareto selection and gate acceptance over per-row score tables, as gepa does them.

A score table maps each candidate to its score on each validation row (the optimiser scores
a failed evaluation 0; a missing or None score counts for nothing, neither a win nor a zero).

- ``pareto_front``: for every row, the candidates with its best score; candidates that are
  best nowhere, or best only where another surviving candidate is also best (dominated), are
  removed. Each survivor is weighted by how many rows it is best on.
- ``select_parent``: one draw from the front, with probability proportional to that weight.
- ``accept``: a child passes its gate only if its sum on the gate rows beats its parent's
  fresh sum on the same rows (a merge: reaches the better parent's).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Scores = Mapping[str, float | None]
"""One candidate's score per row id (None: not scored there)."""
Table = Mapping[str, Scores]
"""Score tables: candidate id -> its scores."""


def mean_score(scores: Scores, rows: Iterable[str] | None = None) -> float | None:
    """The mean of the scores that exist (over ``rows`` only, when given); None if none."""
    keys = scores.keys() if rows is None else rows
    values = [v for k in keys if (v := scores.get(k)) is not None]
    return sum(values) / len(values) if values else None


def winners(table: Table) -> dict[str, set[str]]:
    """For each row that some candidate scored, the candidates with the best score there."""
    best: dict[str, float] = {}
    for scores in table.values():
        for row, value in scores.items():
            if value is not None and value > best.get(row, float("-inf")):
                best[row] = value
    return {
        row: {cid for cid, scores in table.items() if scores.get(row) == top}
        for row, top in best.items()
    }


def pareto_front(table: Table) -> dict[str, int]:
    """The non-dominated candidates, each with the number of rows it is best on.

    Candidates are considered from the lowest mean score up (ties: the later id first); one
    is dropped when every row it is best on has another surviving best candidate, so of two
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
    """One candidate drawn from the Pareto front, weighted by the rows it is best on."""
    front = pareto_front(table)
    if not front:
        raise ValueError("no candidate has a score yet: nothing to select from")
    ids = list(front)
    return rng.choices(ids, weights=[front[cid] for cid in ids])[0]


@dataclass(frozen=True)
class Decision:
    """Whether a child joins the pool, with the sums compared and why, in words."""

    accepted: bool
    child: float | None
    parent: float | None
    why: str


def accept(
    child: Sequence[float],
    parents: Sequence[Sequence[float]],
    *,
    merge: bool = False,
    failed: int = 0,
    require_all: bool = False,
) -> Decision:
    """Compare a child's gate values with its parent's on the same rows, as gepa does: by
    their sums (a failed evaluation is already 0 in them; ``failed`` says how many there
    were, child's and parent's together).

    A mutation must beat its parent strictly; a merge must reach at least the better of its
    parents. With ``require_all`` a gate with any failed evaluation refuses the child.
    """
    if not child:
        return Decision(False, None, None, "no gate rows")
    if require_all and failed:
        return Decision(False, None, None, f"{failed} gate evaluation(s) failed")
    mine = sum(child)
    theirs = max(sum(p) for p in parents)
    where = f"on {len(child)} rows" + (f" ({failed} failed, scored 0)" if failed else "")
    if merge:
        ok = mine >= theirs
        verdict = "at least" if ok else "below"
        return Decision(
            ok, mine, theirs, f"sum {mine:.2f} {where}, {verdict} the better parent's {theirs:.2f}"
        )
    ok = mine > theirs
    verdict = "beats" if ok else "does not beat"
    return Decision(ok, mine, theirs, f"sum {mine:.2f} {where} {verdict} the parent's {theirs:.2f}")


def _order_key(cid: str) -> tuple[int, str]:
    """Candidate ids like ``c12`` sort by number; others after them, by text."""
    digits = cid.lstrip("c")
    return (int(digits), cid) if digits.isdigit() else (1 << 62, cid)
