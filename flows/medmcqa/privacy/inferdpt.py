"""InferDPT's RANTEXT perturbation (Tong et al., 2023), one word at a time.

The reference variant follows the authors' ``func.py`` (github mengtong0110/InferDPT,
``add_laplace_noise_to_vector`` and ``perturb_sentence``), which techhse runs verbatim. For
a word ``t`` with embedding ``v``:

1. draw Laplace noise ``Y`` with scale ``β_j = Δ_j / Z(ε)`` in each dimension ``j``, where
   ``Δ_j`` is the range (max - min) of dimension ``j`` over the vocabulary and
   ``Z(ε) = ε`` for ε < 2, ``Z(ε) = tt(ε) = a·ln(b·ε - c) + d`` from 2 on (``a, b, c, d``
   below: the authors' curve fit; tt(2) = 9.12, tt(3) = 9.36);
2. the radius is ``r = ‖Y‖₂`` (the distance between ``v + Y`` and ``v``); the random
   adjacency list is every vocabulary word at distance ``d < r`` from ``v``;
3. one word of the list is drawn with ``Pr[t'] ∝ exp(ε/2 · (r - d)/r)``: the exponential
   mechanism with utility in [0, 1], sensitivity 1.

A number becomes a uniform random integer from 1 to 1000; a word outside the vocabulary
(or an empty list) is dropped from the text, as ``perturb_sentence`` does.

Privacy. The paper's guarantee is ε for step 3, the list being given. The radius is the
norm of noise drawn without looking at the word, so the noise scale sets only how long the
lists are; but the list itself depends on the word (a word far from ``t`` can only be drawn
when ``r`` exceeds its distance), so the reference variant has no ε bound over the whole
mechanism. The strict variant draws from the whole vocabulary with the utility clipped at 0
(``max(0, (r - d)/r)``): for every ``r`` that is the exponential mechanism with a utility in
[0, 1], so the whole mechanism is ε-LDP per word; a word outside the vocabulary is replaced
by a uniform vocabulary word. Both use the authors' noise scale, which the bound does not
depend on. Numbers and words are told apart in both (a number always becomes a number).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flows.medmcqa.privacy.base import (
    Variant,
    WordMechanism,
    as_rng,
    check_epsilon,
    check_variant,
    is_number,
)
from flows.medmcqa.privacy.embedder import TokenSpace, Vector, distances

TT = (0.01658160142016071, 19.064721649556482, 38.1294334077209, 9.311083811697406)
"""``tt(ε) = a·ln(b·ε - c) + d``: the authors' ``a, b, c, d`` (``func.py``)."""


def noise_divisor(epsilon: float) -> float:
    """``Z(ε)``, what the authors divide each dimension's range by: ε below 2, tt(ε) above."""
    if epsilon < 2:
        return epsilon
    a, b, c, d = TT
    return a * math.log(b * epsilon - c) + d


class InferDPT(WordMechanism):
    """RANTEXT at budget ``epsilon``; ``rng`` (a seed or a Generator) drives the draws that
    are not given a generator of their own."""

    name = "inferdpt"

    def __init__(
        self,
        space: TokenSpace,
        epsilon: float,
        *,
        variant: Variant = "reference",
        rng: np.random.Generator | int | None = None,
    ) -> None:
        self.space, self.epsilon = space, check_epsilon(epsilon, "InferDPT")
        self.variant = check_variant(variant, "InferDPT")
        self.rng = as_rng(rng)
        vectors = space.vectors
        self.noise_scale: Vector = (vectors.max(axis=0) - vectors.min(axis=0)) / noise_divisor(
            self.epsilon
        )
        """The Laplace scale of each dimension: the vocabulary's range over ``Z(ε)``."""
        self._sq = np.einsum("ij,ij->i", vectors, vectors)

    @classmethod
    def bound_for(cls, epsilon: float, variant: Variant) -> str:
        if variant == "strict":
            return f"ε = {epsilon:g} (whole mechanism); noise Δ/{noise_divisor(epsilon):.2f}"
        return (
            f"ε = {epsilon:g} given the adjacency list; none over the whole mechanism (the list "
            f"depends on the word); noise Δ/{noise_divisor(epsilon):.2f}"
        )

    def bound(self) -> str:
        return self.bound_for(self.epsilon, self.variant)

    def distances(self, vectors: Vector) -> NDArray[np.float64]:
        """Euclidean distances from each of ``vectors`` to every vocabulary word."""
        return distances(vectors, self.space.vectors, self._sq)

    def radius(self, rng: np.random.Generator | None = None) -> float:
        """Steps 1-2: the Euclidean norm of one Laplace noise vector (it does not depend on
        the word)."""
        noise = (rng or self.rng).laplace(0.0, self.noise_scale)
        return float(np.sqrt(np.sum(noise * noise)))

    def probabilities_given_radius(
        self, word: str, r: float, d: NDArray[np.float64] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Step 3 for radius ``r``: the candidate words (vocabulary indices) and each one's
        probability; ``d`` is the word's distance to every vocabulary word, when known.
        Reference: the words with ``d < r`` (none: the word is dropped); strict: all."""
        if d is None:
            i = self.space.index.get(word)
            if i is None:
                raise KeyError(f"InferDPT: {word!r} is not in the vocabulary")
            d = self.distances(self.space.vectors[i])[0]
        if self.variant == "strict":
            inside = np.arange(len(d))
            utility = np.maximum(0.0, (r - d) / r) if r > 0 else (d == 0).astype(float)
        else:
            inside = np.flatnonzero(d < r)
            if inside.size == 0:
                return inside, np.zeros(0)
            utility = (r - d[inside]) / r
        weights = np.exp(0.5 * self.epsilon * (utility - utility.max()))
        return inside, weights / weights.sum()

    def context(self, text_words: list[str]) -> dict[str, NDArray[np.float64]]:
        known = [w for w in dict.fromkeys(text_words) if w in self.space.index]
        if not known:
            return {}
        rows = self.space.vectors[[self.space.index[w] for w in known]]
        return dict(zip(known, self.distances(rows), strict=True))

    def replace(self, word: str, rng: np.random.Generator, context: Any) -> str:
        if is_number(word):
            return str(int(rng.integers(1, 1001)))
        d = context.get(word) if context else None
        if d is None:
            return "" if self.variant == "reference" else self.uniform_word(rng)
        indices, probs = self.probabilities_given_radius(word, self.radius(rng), d)
        if indices.size == 0:
            return ""
        return self.space.words[int(indices[rng.choice(len(probs), p=probs)])]
