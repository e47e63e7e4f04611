"""PhraseDP: pick one paraphrase of the question with the exponential mechanism.

The local model writes paraphrase candidates, several per similarity band (``BANDS``);
``clean_candidates`` drops duplicates and copies of the original. ``PhraseDP`` then scores
each candidate by the cosine similarity of its sentence embedding to the original's and
draws one:

- reference (techhse's ``differentially_private_replacement``): ``Pr[c] ∝ exp(-ε·(1 - cos))``,
  that is ``∝ exp(ε · cos(c, x))``. With ``cos`` in [-1, 1] a change of the original moves
  each logit by up to 2ε and the normaliser by as much: the selection spends 4ε;
- strict: ``Pr[c] ∝ exp(ε · cos(c, x) / 4)``, the exponential mechanism with sensitivity 2
  (``exp(ε·u / 2Δu)``): ε-DP.

Either bound holds for a fixed candidate set. Generating the candidates is not DP: the
local model reads the original, and the candidates can leak it; only the selection is
covered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from flows.medmcqa.privacy.base import Variant, as_rng, check_epsilon, check_variant
from flows.medmcqa.privacy.embedder import Embedder, words

BANDS: tuple[tuple[str, str], ...] = (
    ("close", "keep nearly every detail, changing only the wording"),
    ("moderate", "keep the medical meaning but rephrase freely and drop minor details"),
    ("loose", "describe only the general topic, leaving out names, numbers and specifics"),
)
"""Similarity bands the local model writes candidates for: (name, instruction)."""

SENSITIVITY = 2.0
"""The range of the cosine utility, [-1, 1]."""


def kept_words(original: str, chosen: str) -> tuple[int, int]:
    """How many of the original's words the chosen text keeps (each counted as often as it
    occurs in both), and how many words the original has."""
    mine, theirs = Counter(words(original)), Counter(words(chosen))
    return sum((mine & theirs).values()), sum(mine.values())


def clean_candidates(original: str, candidates: Sequence[str]) -> list[str]:
    """Candidates stripped, without empty ones, repeats or copies of the original (compared
    by their words, ignoring case and punctuation), in first-seen order."""
    seen = {tuple(words(original))}
    out: list[str] = []
    for candidate in candidates:
        text = candidate.strip()
        key = tuple(words(text))
        if key and key not in seen:
            seen.add(key)
            out.append(text)
    return out


class PhraseDP:
    """The selection step of PhraseDP at budget ``epsilon``; ``rng`` is a seed or Generator."""

    name = "phrasedp"

    def __init__(
        self,
        embedder: Embedder,
        epsilon: float,
        *,
        variant: Variant = "reference",
        rng: np.random.Generator | int | None = None,
    ) -> None:
        self.embedder, self.epsilon = embedder, check_epsilon(epsilon, "PhraseDP")
        self.variant = check_variant(variant, "PhraseDP")
        self.rng = as_rng(rng)

    @classmethod
    def bound_for(cls, epsilon: float, variant: Variant) -> str:
        if variant == "strict":
            return f"ε = {epsilon:g} (fixed candidates)"
        return f"4ε = {4 * epsilon:g} (fixed candidates; exp(ε·cos), cos in [-1, 1])"

    def bound(self) -> str:
        return self.bound_for(self.epsilon, self.variant)

    @property
    def scale(self) -> float:
        """The factor of ``cos`` in the logits: ε (reference) or ε/4 (strict)."""
        return self.epsilon if self.variant == "reference" else self.epsilon / (2 * SENSITIVITY)

    def scores(self, original: str, candidates: Sequence[str]) -> NDArray[np.float64]:
        """The utility of each candidate: cosine similarity to the original."""
        vectors = self.embedder.sentences([original, *candidates])
        return np.clip(vectors[1:] @ vectors[0], -1.0, 1.0)

    def probabilities_from_scores(self, scores: NDArray[np.float64]) -> NDArray[np.float64]:
        """The exponential mechanism's distribution for given utilities."""
        logits = self.scale * np.asarray(scores, dtype=np.float64)
        weights = np.exp(logits - logits.max())
        return weights / weights.sum()

    def probabilities(self, original: str, candidates: Sequence[str]) -> NDArray[np.float64]:
        """``Pr[c]`` for each candidate (closed form)."""
        if not candidates:
            raise ValueError("PhraseDP: no candidates to choose from")
        return self.probabilities_from_scores(self.scores(original, candidates))

    def select(
        self,
        original: str,
        candidates: Sequence[str],
        rng: np.random.Generator | None = None,
    ) -> str:
        """One candidate drawn with ``probabilities``."""
        probs = self.probabilities(original, candidates)
        return candidates[int((rng or self.rng).choice(len(probs), p=probs))]
