"""InferDPT's RANTEXT perturbation (Tong et al., 2023), one word at a time.

For a word ``t`` with embedding ``v``:

1. add Laplace noise to each dimension ``j`` of ``v``, with scale ``Δ_j / ε``, where ``Δ_j``
   is the range (max - min) of dimension ``j`` over the vocabulary;
2. the random adjacency radius ``r`` is the distance between the noisy and the clean vector;
   the random adjacency list is every vocabulary word within distance ``r`` of ``v``;
3. one word of the list is chosen by the exponential mechanism with utility
   ``u = (r - d) / r`` (in [0, 1], sensitivity 1): ``Pr[t'] ∝ exp(ε · u / 2)``.

Numbers are replaced by a uniform random integer below 1000. A word with no vector is
replaced by a uniform draw from the vocabulary.

Where the authors' public code departs from the paper (its noise scale for ε >= 2, for
one), this class follows the paper: one formula for every ε, so the results at every ε
come from one mechanism, the one the paper describes and analyses.

The selection is conditioned on a random ``r``, so no closed-form output distribution is
exposed: ``adjacency_probabilities(word, r)`` gives the distribution of step 3 for a given
radius, which is what the tests check the sampler against. No DP bound beyond the paper's
analysis is claimed here.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from flows.medmcqa.privacy.embedder import TokenSpace, Vector, distances, replace_words, words


class InferDPT:
    """RANTEXT at budget ``epsilon``; ``rng`` (a seed or a Generator) drives the draws that
    are not given a generator of their own."""

    name = "inferdpt"

    def __init__(
        self,
        space: TokenSpace,
        epsilon: float,
        *,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        if not epsilon > 0:
            raise ValueError(f"InferDPT: epsilon must be positive, got {epsilon}")
        self.space, self.epsilon = space, float(epsilon)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        vectors = space.vectors
        self.noise_scale: Vector = (vectors.max(axis=0) - vectors.min(axis=0)) / self.epsilon
        """The Laplace scale of each dimension: the vocabulary's range over ε."""
        self._sq = np.einsum("ij,ij->i", vectors, vectors)

    def distances(self, vectors: Vector) -> NDArray[np.float64]:
        """Euclidean distances from each of ``vectors`` to every vocabulary word."""
        return distances(vectors, self.space.vectors, self._sq)

    def radius(self, vector: Vector, rng: np.random.Generator | None = None) -> float:
        """Step 1-2: the distance between ``vector`` and its Laplace-noised copy."""
        noise = (rng or self.rng).laplace(0.0, self.noise_scale)
        return float(np.linalg.norm(noise))

    def adjacency_probabilities(
        self, word: str, r: float, d: NDArray[np.float64] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Step 3 for radius ``r``: the adjacency list (vocabulary indices) and each one's
        probability; ``d`` is the word's distance to every vocabulary word, when known. An
        empty list (an unknown word far from all) falls back to the nearest word."""
        if d is None:
            vector = self.space.vector(word)
            if vector is None:
                raise KeyError(f"InferDPT: {word!r} has no vector")
            d = self.distances(vector)[0]
        inside = np.flatnonzero(d <= r)
        if inside.size == 0:
            return np.asarray([int(np.argmin(d))]), np.ones(1)
        utility = (r - d[inside]) / r if r > 0 else np.ones(inside.size)
        weights = np.exp(0.5 * self.epsilon * (utility - utility.max()))
        return inside, weights / weights.sum()

    def sanitise_word(
        self,
        word: str,
        rng: np.random.Generator | None = None,
        d: NDArray[np.float64] | None = None,
    ) -> str:
        """One draw of RANTEXT for a single (lower-case) word (``d`` as above)."""
        rng = rng or self.rng
        if word.replace(".", "", 1).isdigit():
            return str(int(rng.integers(0, 1000)))
        vector = self.space.vector(word)
        if vector is None:
            return self.space.words[int(rng.integers(len(self.space.words)))]
        indices, probs = self.adjacency_probabilities(word, self.radius(vector, rng), d)
        return self.space.words[int(indices[rng.choice(len(probs), p=probs)])]

    def sanitise(self, text: str, rng: np.random.Generator | None = None) -> str:
        """``text`` with every word perturbed independently; spacing and punctuation kept."""
        known = {w: v for w in words(text) if (v := self.space.vector(w)) is not None}
        table = (
            dict(zip(known, self.distances(np.asarray(list(known.values()))), strict=True))
            if known
            else {}
        )
        return replace_words(text, lambda word: self.sanitise_word(word, rng, table.get(word)))
