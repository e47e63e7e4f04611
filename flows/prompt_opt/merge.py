"""Merges of two Pareto-front members: gepa's component-wise crossover, and an LLM merge.

**Crossover** (as gepa's ``MergeProposer``): two front members i and j that are not each
other's ancestors and share an ancestor a that scores no higher than either. Component by
component, the child takes the text of whichever of i and j changed it from a; when both
changed it, the text of the one with the higher validation mean (a coin toss when equal);
when neither did, theirs. A triplet needs one component that exactly one of i and j
changed, so a candidate of one component never crosses over. Each (i, j, a) is tried once.

**LLM merge** (flowkit's): the reflection model is asked to combine the texts of up to
``merge_width`` front members (default 3; 2 is a pair), component by component where they
differ. It runs only after a round that accepted a child, never on members where one
descends from another, and each group is tried once; a wide round (many children at once)
is how its findings get combined.

Both are gated on a handful of validation rows (gepa: up to 5, balanced between rows where
i is better, rows where j is, and ties; the LLM merge takes only rows where the members
differ, one where each is best in turn): the child must reach at least the best parent's
sum there. The parents' figures are
their validation scores; the child's are fresh, and an accepted child is then scored fresh
on the whole validation set, so no gate score enters its record.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from flows.prompt_opt.pareto import Table, mean_score, pareto_front

Triplet = tuple[str, str, str]


def order(cid: str) -> int:
    digits = cid.lstrip("c")
    return int(digits) if digits.isdigit() else 1 << 30


def find_crossover(
    front: Sequence[str],
    components: Mapping[str, Mapping[str, str]],
    ancestors: Callable[[str], set[str]],
    scores: Mapping[str, float],
    tried: set[Triplet],
    rng: random.Random,
    attempts: int = 10,
) -> tuple[Triplet, dict[str, str]] | None:
    """A triplet (i, j, ancestor) worth crossing and the child's components, or None."""
    if len(front) < 2:
        return None
    for _ in range(attempts):
        i, j = sorted(rng.sample(list(front), 2), key=order)
        up_i, up_j = ancestors(i), ancestors(j)
        if i in up_j or j in up_i:
            continue
        common = [
            a
            for a in sorted(up_i & up_j, key=order)
            if (i, j, a) not in tried
            and scores[a] <= scores[i]
            and scores[a] <= scores[j]
            and _one_side_changed(components[a], components[i], components[j])
        ]
        if not common:
            continue
        weights = [scores[a] for a in common]
        if sum(weights) <= 0:
            weights = [1.0] * len(common)
        a = rng.choices(common, weights=weights, k=1)[0]
        return (i, j, a), crossover(components[a], components[i], components[j], i, j, scores, rng)
    return None


def _one_side_changed(a: Mapping[str, str], i: Mapping[str, str], j: Mapping[str, str]) -> bool:
    return any((a[n] == i[n] or a[n] == j[n]) and i[n] != j[n] for n in a)


def crossover(
    a: Mapping[str, str],
    i: Mapping[str, str],
    j: Mapping[str, str],
    id_i: str,
    id_j: str,
    scores: Mapping[str, float],
    rng: random.Random,
) -> dict[str, str]:
    """The child of ``i`` and ``j`` over their common ancestor ``a``, component by component."""
    child = dict(a)
    for name in a:
        if (a[name] == i[name] or a[name] == j[name]) and i[name] != j[name]:
            child[name] = j[name] if a[name] == i[name] else i[name]
        elif a[name] != i[name] and a[name] != j[name]:
            if scores[id_i] > scores[id_j]:
                child[name] = i[name]
            elif scores[id_j] > scores[id_i]:
                child[name] = j[name]
            else:
                child[name] = rng.choice([i[name], j[name]])
        else:
            child[name] = i[name]
    return child


def llm_merge_group(
    front: Sequence[str],
    table: Table,
    ancestors: Callable[[str], set[str]],
    tried: set[frozenset[str]],
    rng: random.Random,
    width: int = 2,
    attempts: int = 10,
) -> list[str] | None:
    """Up to ``width`` front members to merge by LLM: none descends from another, each is
    better than the others already chosen on some validation row, and the group was not
    tried before; None when no group of two or more is found."""
    for _ in range(attempts):
        members = list(front)
        rng.shuffle(members)
        group = members[:1]
        for cid in members[1:]:
            if len(group) == width:
                break
            related = any(cid in ancestors(g) or g in ancestors(cid) for g in group)
            if not related and any(_better_somewhere(table[cid], table[g]) for g in group):
                group.append(cid)
        if len(group) > 1 and frozenset(group) not in tried:
            return sorted(group, key=order)
    return None


def _better_somewhere(a: Mapping[str, float | None], b: Mapping[str, float | None]) -> bool:
    return any((a[r] or 0.0) > (b.get(r) or 0.0) for r in a)


def group_gate_rows(
    tables: Sequence[Mapping[str, float | None]], rng: random.Random, size: int = 5
) -> list[str]:
    """Up to ``size`` validation rows where the members disagree: in turn, a row where each
    member alone is best, then other rows where they differ."""
    rows = [r for r in tables[0] if all(r in t for t in tables)]
    values = {r: [t[r] or 0.0 for t in tables] for r in rows}
    buckets = [
        [r for r in rows if values[r][n] > max(v for m, v in enumerate(values[r]) if m != n)]
        for n in range(len(tables))
    ]
    for bucket in buckets:
        rng.shuffle(bucket)
    chosen: list[str] = []
    while len(chosen) < size and any(buckets):
        for bucket in buckets:
            if bucket and len(chosen) < size:
                chosen.append(bucket.pop())
    differ = [r for r in rows if r not in chosen and len(set(values[r])) > 1]
    rng.shuffle(differ)
    return chosen + differ[: size - len(chosen)]


def gate_rows(
    a: Mapping[str, float | None],
    b: Mapping[str, float | None],
    rng: random.Random,
    size: int = 5,
    *,
    ties: bool = True,
) -> list[str]:
    """Up to ``size`` validation rows to gate a merge on, balanced between rows where ``a``
    is better, rows where ``b`` is, and (with ``ties``) rows where they are equal."""
    common = [r for r in a if r in b]
    better_a = [r for r in common if (a[r] or 0.0) > (b[r] or 0.0)]
    better_b = [r for r in common if (b[r] or 0.0) > (a[r] or 0.0)]
    equal = [r for r in common if r not in better_a and r not in better_b] if ties else []
    each = max(1, math.ceil(size / 3))
    chosen: list[str] = []
    for bucket in (better_a, better_b, equal):
        take = min(len(bucket), each, size - len(chosen))
        if take > 0:
            chosen += rng.sample(bucket, k=take)
    spare = [r for r in (*better_a, *better_b, *equal) if r not in chosen]
    if len(chosen) < size and spare:
        chosen += rng.sample(spare, k=min(len(spare), size - len(chosen)))
    return chosen


@dataclass(frozen=True)
class MergePlan:
    """A merge to try: its parents and gate rows, and the child's components (a crossover)
    or the components to ask the LLM to merge."""

    parents: tuple[str, ...]
    rows: tuple[str, ...]
    child: dict[str, str] | None = None
    components: tuple[str, ...] = ()


def plan_merge(
    kind: str,
    width: int,
    table: Table,
    components: Mapping[str, Mapping[str, str]],
    ancestors: Callable[[str], set[str]],
    tried_triplets: set[Triplet],
    tried_groups: set[frozenset[str]],
    rng: random.Random,
) -> MergePlan | None:
    """A crossover when ``kind`` allows it and a triplet is found, else (``kind`` "auto" or
    "llm") an LLM merge of up to ``width`` front members; None when neither applies. What
    is planned is marked tried."""
    front = list(pareto_front(table))
    if kind in ("auto", "crossover"):
        found = find_crossover(
            front, components, ancestors, front_scores(table), tried_triplets, rng
        )
        if found is not None:
            (i, j, a), child = found
            tried_triplets.add((i, j, a))
            return MergePlan((i, j), tuple(gate_rows(table[i], table[j], rng)), child=child)
    if kind in ("auto", "llm"):
        group = llm_merge_group(front, table, ancestors, tried_groups, rng, width)
        if group is not None:
            tried_groups.add(frozenset(group))
            first = components[group[0]]
            differ = tuple(n for n in first if any(components[g][n] != first[n] for g in group))
            rows = tuple(group_gate_rows([table[g] for g in group], rng))
            return MergePlan(tuple(group), rows, components=differ)
    return None


def front_scores(table: Table) -> dict[str, float]:
    return {cid: mean_score(s) or 0.0 for cid, s in table.items()}
