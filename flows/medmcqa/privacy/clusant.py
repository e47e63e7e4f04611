"""CluSanT (Awon et al., 2025): pick a cluster, then a word in it, each by the exponential
mechanism.

The reference variant follows the authors' ``src/clusant.py`` (github AwonSomeSauce/CluSanT)
with the parameters techhse runs it with (336 clusters, ``K = 16``, Euclidean distances,
``dp_type="metric"``):

- clusters: until every word has one, a word drawn at random and its ``n // clusters``
  nearest remaining words (itself included) form a cluster (``create_clusters``); the same
  clusters serve every ε, as the authors' cached cluster file does;
- step 1: the cluster ``C`` is drawn with ``Pr[C | x] ∝ exp(-ε · D(C_x, C) / 2)``, ``D`` the
  distance between the clusters' centroids scaled by ``K`` (sensitivity 1);
- step 2: the word ``y`` of ``C`` with ``Pr[y | x, C] ∝ exp(-ε · d(x, y) / (2·diam C))``,
  ``diam C`` the largest distance inside ``C`` (a one-word cluster gives its word; the
  authors' code divides by zero there). A word outside the vocabulary is kept.

Privacy. The paper (Fig. 2, Theorem 5) runs each step with ε/2 and step 2 with sensitivity
``Δ = max(1, max |d(x, y) - d(x', y)|)``, which gives ε-metric-LDP. The code passes the whole
ε to each step and divides by the chosen cluster's diameter, so for words x, x' and an
output in cluster C the reference spends ``ε·(D(C_x, C_x') + d(x, x')/diam C)``: ε between
two words of one cluster, twice the paper's. The strict variant is the paper's: ε/2 per step
and ``Δ = max(1, 2·max‖v - v̄‖)`` (a bound on the vocabulary's diameter, never below it), so
it spends ``(ε/2)·(D(C_x, C_x') + d(x, x')/Δ)``, at most ε/2 inside a cluster; a word outside
the vocabulary becomes a uniform vocabulary word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flows.medmcqa.privacy.base import (
    Variant,
    WordMechanism,
    as_rng,
    check_epsilon,
    check_variant,
)
from flows.medmcqa.privacy.embedder import TokenSpace, distances


@dataclass(frozen=True, eq=False)
class Clustering:
    """A partition of the vocabulary, its centroid distances (scaled by ``k``) and the
    largest distance inside each cluster."""

    clusters: tuple[NDArray[np.int64], ...]
    label: NDArray[np.int64]
    centroid_distances: NDArray[np.float64]
    diameters: NDArray[np.float64]
    k: float

    @classmethod
    def build(cls, space: TokenSpace, clusters: int, k: float, seed: int = 0) -> Clustering:
        """The authors' ``create_clusters`` with a seeded draw of each cluster's first word."""
        if clusters < 1 or not k > 0:
            raise ValueError(f"CluSanT: need clusters >= 1 and k > 0, got {clusters}, {k}")
        vectors, rng = space.vectors, np.random.default_rng(seed)
        n = len(space.words)
        size = n // min(clusters, n)
        sq = np.einsum("ij,ij->i", vectors, vectors)
        taken = np.zeros(n, dtype=bool)
        parts: list[NDArray[np.int64]] = []
        while not taken.all():
            free = np.flatnonzero(~taken)
            first = free[int(rng.integers(free.size))]
            d = distances(vectors[first], vectors, sq)[0]
            d[taken] = np.inf
            members = np.argsort(d, kind="stable")[: min(size, free.size)]
            parts.append(members)
            taken[members] = True
        label = np.empty(len(space.words), dtype=np.int64)
        for c, members in enumerate(parts):
            label[members] = c
        centroids = k * np.asarray([vectors[m].mean(axis=0) for m in parts])
        diameters = np.asarray([distances(vectors[m], vectors[m]).max() for m in parts])
        return cls(tuple(parts), label, distances(centroids, centroids), diameters, float(k))


class CluSanT(WordMechanism):
    """CluSanT at budget ``epsilon``; ``clustering`` shares one partition between instances
    that differ only in ε (else one is built from ``cluster_seed``)."""

    name = "clusant"

    def __init__(
        self,
        space: TokenSpace,
        epsilon: float,
        *,
        clusters: int = 336,
        k: float = 16.0,
        variant: Variant = "reference",
        rng: np.random.Generator | int | None = None,
        cluster_seed: int = 0,
        clustering: Clustering | None = None,
    ) -> None:
        self.space, self.epsilon = space, check_epsilon(epsilon, "CluSanT")
        self.variant = check_variant(variant, "CluSanT")
        self.rng = as_rng(rng)
        self.n_clusters, self.k, self.cluster_seed = clusters, float(k), cluster_seed
        self.clustering = clustering or Clustering.build(space, clusters, k, cluster_seed)
        centre = space.vectors.mean(axis=0)
        spread = float(np.sqrt(np.max(np.sum((space.vectors - centre) ** 2, axis=1))))
        self.sensitivity = max(1.0, 2 * spread)
        """Step 2's sensitivity in the strict variant: at least the vocabulary's diameter."""
        self._sq = np.einsum("ij,ij->i", space.vectors, space.vectors)

    @classmethod
    def bound_for(cls, epsilon: float, variant: Variant, k: float = 16.0) -> str:
        if variant == "strict":
            return (
                f"{epsilon / 2:g}·(D(Cx,Cx') + d(x,x')/Δ), the paper's ε-MLDP: {epsilon / 2:g} "
                f"within a cluster; D between centroids x{k:g}"
            )
        return (
            f"{epsilon:g}·(D(Cx,Cx') + d(x,x')/diam C): {epsilon:g} within a cluster (twice "
            f"the paper's); D between centroids x{k:g}; unknown words kept"
        )

    def bound(self) -> str:
        """``bound_for``, with the clusters' sizes and the median ``D`` between two."""
        sizes = sorted({len(c) for c in self.clustering.clusters})
        d = self.clustering.centroid_distances
        median = float(np.median(d[np.triu_indices(len(d), k=1)])) if len(d) > 1 else 0.0
        size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        return (
            f"{self.bound_for(self.epsilon, self.variant, self.k)}; {len(d)} clusters of "
            f"{size} words, median D = {median:.3g}"
        )

    def cluster_probabilities(self, word: str) -> NDArray[np.float64]:
        """Step 1: ``Pr[C | word]`` for every cluster."""
        c = self.clustering.label[self.space.index[word]]
        scale = 0.5 * self.epsilon if self.variant == "reference" else 0.25 * self.epsilon
        logits = -scale * self.clustering.centroid_distances[c]
        weights = np.exp(logits - logits.max())
        return weights / weights.sum()

    def word_probabilities(
        self, word: str, cluster: int, d: NDArray[np.float64] | None = None
    ) -> NDArray[np.float64]:
        """Step 2: ``Pr[y | word, C]`` over the members of cluster ``C`` (in their order);
        ``d`` is the word's distance to every vocabulary word, when known."""
        members = self.clustering.clusters[cluster]
        if d is None:
            d = distances(self.space.vectors[self.space.index[word]], self.space.vectors)[0]
        if self.variant == "reference":
            diameter = self.clustering.diameters[cluster]
            if diameter == 0:
                return np.ones(len(members)) / len(members)
            logits = -self.epsilon * d[members] / (2 * diameter)
        else:
            logits = -self.epsilon * d[members] / (4 * self.sensitivity)
        weights = np.exp(logits - logits.max())
        return weights / weights.sum()

    def probabilities(self, word: str) -> dict[str, float]:
        """The whole output distribution for a vocabulary word (steps 1 and 2 combined)."""
        d = distances(self.space.vectors[self.space.index[word]], self.space.vectors)[0]
        out: dict[str, float] = {}
        for c, pc in enumerate(self.cluster_probabilities(word)):
            for j, q in zip(
                self.clustering.clusters[c], self.word_probabilities(word, c, d), strict=True
            ):
                out[self.space.words[j]] = out.get(self.space.words[j], 0.0) + pc * q
        return out

    def context(self, text_words: list[str]) -> dict[str, NDArray[np.float64]]:
        known = [w for w in dict.fromkeys(text_words) if w in self.space.index]
        if not known:
            return {}
        rows = self.space.vectors[[self.space.index[w] for w in known]]
        return dict(zip(known, distances(rows, self.space.vectors, self._sq), strict=True))

    def replace(self, word: str, rng: np.random.Generator, context: Any) -> str:
        d = context.get(word) if context else None
        if d is None:
            return word if self.variant == "reference" else self.uniform_word(rng)
        probs = self.cluster_probabilities(word)
        c = int(rng.choice(len(probs), p=probs))
        inside = self.word_probabilities(word, c, d)
        return self.space.words[int(self.clustering.clusters[c][rng.choice(len(inside), p=inside)])]
