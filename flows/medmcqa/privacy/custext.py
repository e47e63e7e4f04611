"""CusText+ (Chen et al., 2023): the exponential mechanism inside fixed clusters of words.

The reference variant follows the authors' code (github sai4july/CusText,
``get_customized_mapping`` with the default ``conservative`` strategy and
``generate_new_sents_s1`` with ``save_stop_words``), on unit-length vectors compared by
their dot product (cosine), as with the default ``ct_vectors``:

- mapping: for each corpus word, most frequent first, that has a vector and no cluster yet,
  its ``top_k`` most similar words (itself included, ties in vocabulary order) form a
  cluster; each of them without a cluster gets this one, with its similarities to the
  members; then the members' vectors are set to zero, so later clusters pass them over;
- sampling: a word ``x`` of a cluster becomes member ``y`` with
  ``Pr[y | x] ∝ exp(ε · u(x, y) / 2)``, ``u`` the similarity min-max normalised over the
  cluster (in [0, 1], sensitivity 1);
- CusText+: a stop word (NLTK's English list) is kept; a word outside the mapping is kept,
  a number outside it becomes ``round(number) + randint(0, 999)``.

Privacy (the paper's theorem): ε-DP between two words of one cluster. Words of different
clusters have disjoint outputs, so no bound holds between them (CluSanT's Theorem 4), nor
for a kept word. The strict variant sanitises stop words too (CusText without the +), turns
a number outside the mapping into a uniform integer from 1 to 1000 and an unknown word into
a uniform vocabulary word: every word then goes through its cluster's ε-DP draw or through a
draw that does not depend on it; the cross-cluster caveat stays (it is CusText's notion).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flows.medmcqa.privacy.base import (
    STOP_WORDS,
    Variant,
    WordMechanism,
    as_rng,
    check_epsilon,
    check_variant,
    is_number,
)
from flows.medmcqa.privacy.embedder import TokenSpace


def corpus_order(space: TokenSpace, frequencies: Mapping[str, int] | None) -> list[str]:
    """The corpus's words, most frequent first (ties in order of first sight, as
    ``Counter.most_common``); without counts, the vocabulary by its frequency ranks."""
    if frequencies is None:
        return [space.words[i] for i in np.argsort(space.ranks, kind="stable")]
    return sorted(frequencies, key=lambda word: -frequencies[word])


@dataclass(frozen=True, eq=False)
class CusTextMapping:
    """Each mapped word's cluster (vocabulary indices) and its similarity to each member."""

    members: dict[int, NDArray[np.int64]]
    similarities: dict[int, NDArray[np.float64]]

    @classmethod
    def build(cls, space: TokenSpace, top_k: int, order: Sequence[str]) -> CusTextMapping:
        """The authors' conservative mapping, seeding clusters in ``order``."""
        if top_k < 1:
            raise ValueError(f"CusTextPlus: top_k must be at least 1, got {top_k}")
        norms = np.linalg.norm(space.vectors, axis=1, keepdims=True)
        work = space.vectors / np.where(norms == 0, 1.0, norms)
        members: dict[int, NDArray[np.int64]] = {}
        similarities: dict[int, NDArray[np.float64]] = {}
        for word in order:
            seed = space.index.get(word)
            if seed is None or seed in members:
                continue
            cluster = np.argsort(-(work @ work[seed]), kind="stable")[:top_k]
            rows = work[cluster].copy()
            for x in cluster.tolist():
                if x not in members:
                    members[x] = cluster
                    similarities[x] = rows @ work[x]
            work[cluster] = 0.0
        return cls(members, similarities)


class CusTextPlus(WordMechanism):
    """CusText+ at budget ``epsilon``; ``frequencies`` are word counts in the task's corpus
    (None: the vocabulary's frequency ranks); ``mapping`` shares a built mapping between
    instances that differ only in ε."""

    name = "custext+"

    def __init__(
        self,
        space: TokenSpace,
        epsilon: float,
        *,
        top_k: int = 20,
        frequencies: Mapping[str, int] | None = None,
        variant: Variant = "reference",
        rng: np.random.Generator | int | None = None,
        mapping: CusTextMapping | None = None,
    ) -> None:
        self.space, self.epsilon = space, check_epsilon(epsilon, "CusTextPlus")
        self.top_k, self.frequencies = top_k, frequencies
        self.variant = check_variant(variant, "CusTextPlus")
        self.rng = as_rng(rng)
        if mapping is None:
            mapping = CusTextMapping.build(space, top_k, corpus_order(space, frequencies))
        self.mapping = mapping

    @classmethod
    def bound_for(cls, epsilon: float, variant: Variant, top_k: int = 20) -> str:
        if variant == "strict":
            return f"ε = {epsilon:g} within a cluster of {top_k}; none across clusters"
        return (
            f"ε = {epsilon:g} within a cluster of {top_k}; none across clusters, nor for kept "
            "stop words and unknown words or shifted numbers"
        )

    def bound(self) -> str:
        return self.bound_for(self.epsilon, self.variant, self.top_k)

    def cluster_probabilities(self, word: str) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """The cluster of a mapped word (vocabulary indices) and ``Pr[y | word]`` over it."""
        x = self.space.index.get(word)
        if x is None or x not in self.mapping.members:
            raise KeyError(f"CusTextPlus: {word!r} has no cluster")
        sims = self.mapping.similarities[x]
        spread = sims.max() - sims.min()
        utility = (sims - sims.min()) / spread if spread > 0 else np.zeros_like(sims)
        weights = np.exp(0.5 * self.epsilon * (utility - 1.0))
        return self.mapping.members[x], weights / weights.sum()

    def probabilities(self, word: str) -> dict[str, float]:
        """The output distribution of a word that is kept or goes through its cluster."""
        mapped = self.space.index.get(word) in self.mapping.members
        if self.variant == "reference" and (word in STOP_WORDS or not mapped):
            return {word: 1.0}
        members, probs = self.cluster_probabilities(word)
        out: dict[str, float] = {}
        for j, q in zip(members.tolist(), probs.tolist(), strict=True):
            out[self.space.words[j]] = out.get(self.space.words[j], 0.0) + q
        return out

    def replace(self, word: str, rng: np.random.Generator, context: Any) -> str:
        mapped = self.space.index.get(word) in self.mapping.members
        if self.variant == "reference":
            if word in STOP_WORDS:
                return word
            if not mapped:
                if is_number(word):
                    return str(round(float(word)) + int(rng.integers(1000)))
                return word
        elif not mapped:
            if is_number(word):
                return str(int(rng.integers(1, 1001)))
            return self.uniform_word(rng)
        members, probs = self.cluster_probabilities(word)
        return self.space.words[int(members[rng.choice(len(probs), p=probs)])]
