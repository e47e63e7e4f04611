"""PhraseDP: pick one paraphrase of the question with the exponential mechanism.

The local model writes paraphrase candidates, several per similarity band (``BANDS``);
``clean_candidates`` drops duplicates and copies of the original. ``PhraseDP`` then scores
each candidate by the cosine similarity of its sentence embedding to the original's and
draws one with ``Pr[c] ∝ exp(ε · cos(c, x) / 4)``: the exponential mechanism with utility
``cos`` in [-1, 1], whose sensitivity is 2. For a fixed candidate set the selection is ε-DP
with respect to the original text. Generating the candidates is not DP: the local model
reads the original, and the candidates can leak it; only the selection step is covered.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from flows.medmcqa.privacy.embedder import Embedder, words

BANDS: tuple[tuple[str, str], ...] = (
    ("close", "keep nearly every detail, changing only the wording"),
    ("moderate", "keep the medical meaning but rephrase freely and drop minor details"),
    ("loose", "describe only the general topic, leaving out names, numbers and specifics"),
)
"""Similarity bands the local model writes candidates for: (name, instruction)."""

SENSITIVITY = 2.0
"""The range of the cosine utility, [-1, 1]."""


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
        rng: np.random.Generator | int | None = None,
    ) -> None:
        if not epsilon > 0:
            raise ValueError(f"PhraseDP: epsilon must be positive, got {epsilon}")
        self.embedder, self.epsilon = embedder, float(epsilon)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def scores(self, original: str, candidates: Sequence[str]) -> NDArray[np.float64]:
        """The utility of each candidate: cosine similarity to the original."""
        vectors = self.embedder.sentences([original, *candidates])
        return np.clip(vectors[1:] @ vectors[0], -1.0, 1.0)

    def probabilities_from_scores(self, scores: NDArray[np.float64]) -> NDArray[np.float64]:
        """The exponential mechanism's distribution for given utilities."""
        logits = self.epsilon * np.asarray(scores, dtype=np.float64) / (2 * SENSITIVITY)
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
