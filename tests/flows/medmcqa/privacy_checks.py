"""Shared helpers for the privacy tests: a toy vocabulary and a chi-square goodness of fit."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from flows.medmcqa.privacy import TokenSpace

TOY = {  # a tiny 2-D vocabulary, in an order unrelated to any frequency
    "gout": (-0.2, -1.4),
    "the": (0.0, 0.0),
    "fever": (1.0, 0.2),
    "cough": (1.2, -0.1),
    "rash": (0.3, 1.1),
    "aspirin": (-0.9, 0.4),
    "insulin": (-1.1, -0.6),
    "sepsis": (2.0, 1.5),
}
CORPUS = {  # word counts in order of first sight; "heparin" has no vector
    "the": 9,
    "fever": 5,
    "cough": 4,
    "rash": 3,
    "heparin": 2,
    "aspirin": 2,
    "insulin": 1,
    "sepsis": 1,
    "gout": 1,
}


def toy_space() -> TokenSpace:
    return TokenSpace.from_table({w: list(v) for w, v in TOY.items()})


def vec(word: str) -> np.ndarray:
    return np.asarray(TOY[word], dtype=float)


def softmax(logits: np.ndarray) -> np.ndarray:
    w = np.exp(logits - logits.max())
    return w / w.sum()


def chi_square_ok(counts: Sequence[int], probs: Sequence[float]) -> bool:
    """Chi-square goodness of fit at the 0.1 % level (Wilson-Hilferty critical value),
    merging cells expected below 5 into one."""
    n = sum(counts)
    pairs = sorted(zip(probs, counts, strict=True), reverse=True)
    merged: list[tuple[float, int]] = []
    rest_p, rest_c = 0.0, 0
    for p, c in pairs:
        if p * n >= 5:
            merged.append((p, c))
        else:
            rest_p, rest_c = rest_p + p, rest_c + c
    if rest_p > 0:
        merged.append((rest_p, rest_c))
    if len(merged) < 2:
        return True
    stat = sum((c - p * n) ** 2 / (p * n) for p, c in merged)
    df = len(merged) - 1
    z = 3.090  # upper 0.1 % of the standard normal
    critical = df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
    return stat <= critical


def worst_log_ratio(dists: Sequence[dict[str, float]]) -> float:
    """max over pairs of distributions and common outputs of |ln p(y) - ln q(y)|; an output
    one gives and the other cannot counts as infinite."""
    worst = 0.0
    for a in dists:
        for b in dists:
            for y in set(a) | set(b):
                pa, pb = a.get(y, 0.0), b.get(y, 0.0)
                if pa == 0 and pb == 0:
                    continue
                if pa == 0 or pb == 0:
                    return math.inf
                worst = max(worst, abs(math.log(pa) - math.log(pb)))
    return worst
