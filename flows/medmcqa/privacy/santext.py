"""SANTEXT+ (Yue et al., 2021): word-level metric DP over an embedding vocabulary.

The reference variant follows the authors' ``SanText.py`` (``SanText_plus``) and
``run_SanText.py`` (github xiangyue9607/SanText):

- the words are ranked by their frequency in the task's corpus (``frequencies``; each word
  of the vocabulary counts one more, as ``run_SanText.py`` does with a BERT vocabulary) and
  the rarest ``int(w·n) + 1`` of the ``n`` words are *sensitive*; the sensitive words with a
  vector form the output set ``V_S``;
- a sensitive word is always replaced; any other vocabulary word is replaced with
  probability ``p`` and kept otherwise; a replacement ``y`` is drawn from ``V_S`` with
  ``Pr[y | x] ∝ exp(-ε · d(x, y) / 2)`` (Eq. 1), ``d`` the Euclidean distance;
- a word outside the vocabulary is replaced by a word drawn uniformly from all ``n``.

``p = 0.3`` and ``w = 0.9`` are the values of the authors' README example and of the paper's
experiments (§5.2). techhse's MedQA script calls its SANTEXT+ with ``p = 0.3`` (its
default) and sets no sensitive fraction of its own, so the README pair is the one that
matches it; ``run_SanText.py``'s argparse defaults are ``p = 0.2, w = 0.5``.

Privacy (the paper's Theorem 2, (V_S, V_S, ε, ln 1/p)-UMLDP): for any two words x, x' and a
replacement y in ``V_S``, ``|ln Pr[y|x] - ln Pr[y|x']| <= ε·d(x, x') + ln(1/p)`` (ε·d alone
when both are sensitive); a non-sensitive word kept as it is (probability ``1 - p``) is
published: no bound covers it. The strict variant sets ``p = 1``: every word is replaced by
Eq. 1, so no word is published as is and the whole mechanism is ε·d(x, x')-LDP per word; a
word outside the vocabulary is replaced uniformly from ``V_S``.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flows.medmcqa.privacy.base import (
    Variant,
    WordMechanism,
    as_rng,
    by_frequency,
    check_epsilon,
    check_variant,
    median_distance,
)
from flows.medmcqa.privacy.embedder import TokenSpace, Vector, distances


class SanTextPlus(WordMechanism):
    """SANTEXT+ at budget ``epsilon``; ``rng`` (a seed or a Generator) drives the draws that
    are not given a generator of their own. ``frequencies``: word counts in the task's
    corpus (None: the vocabulary's own frequency ranks). Replacement distributions are
    cached per word (thread-safe), so one instance serves many texts."""

    name = "santext+"

    def __init__(
        self,
        space: TokenSpace,
        epsilon: float,
        *,
        p: float = 0.3,
        w: float = 0.9,
        frequencies: Mapping[str, int] | None = None,
        variant: Variant = "reference",
        rng: np.random.Generator | int | None = None,
        cache_size: int = 128,
    ) -> None:
        if not 0 <= p <= 1 or not 0 <= w <= 1:
            raise ValueError(f"SanTextPlus: need 0 <= p <= 1 and 0 <= w <= 1, got p={p}, w={w}")
        self.space, self.epsilon = space, check_epsilon(epsilon, "SanTextPlus")
        self.p, self.w, self.frequencies = p, w, frequencies
        self.variant = check_variant(variant, "SanTextPlus")
        self.rng = as_rng(rng)
        self.all_words: list[str] = by_frequency(space, frequencies)
        """Every word, most frequent first: the unknown-word draw's range (reference)."""
        n = len(self.all_words)
        rarest = set(self.all_words[-min(n, int(w * n) + 1) :])
        chosen = [i for i, word in enumerate(space.words) if word in rarest]
        if not chosen:
            raise ValueError(
                f"SanTextPlus: no sensitive word has a vector (w={w}); raise w or give a "
                "vocabulary that covers the corpus's rare words"
            )
        self.sensitive: NDArray[np.int64] = np.asarray(chosen, dtype=np.int64)
        """Indices (into the vocabulary) of ``V_S``: the sensitive words, the outputs of a
        replacement."""
        self._is_sensitive = np.zeros(len(space.words), dtype=bool)
        self._is_sensitive[self.sensitive] = True
        self._targets = space.vectors[self.sensitive]
        self._targets_sq = np.einsum("ij,ij->i", self._targets, self._targets)
        self._cache: OrderedDict[str, NDArray[np.float64]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @classmethod
    def bound_for(cls, epsilon: float, variant: Variant, p: float = 0.3) -> str:
        if variant == "strict" or p >= 1:
            return f"{epsilon:g}·d(x,x')"
        if p <= 0:
            return f"{epsilon:g}·d(x,x') between sensitive words; other words published as is"
        return (
            f"{epsilon:g}·d(x,x') + ln(1/p) = {epsilon:g}·d + {math.log(1 / p):.2f} for a "
            f"replacement; none for a non-sensitive word kept ({1 - p:.0%})"
        )

    def bound(self) -> str:
        """``bound_for``, and the median distance between two vocabulary words."""
        median = median_distance(self.space.vectors)
        return f"{self.bound_for(self.epsilon, self.variant, self.p)}; median d = {median:.3g}"

    @property
    def replace_share(self) -> float:
        """The probability that a non-sensitive vocabulary word is replaced."""
        return 1.0 if self.variant == "strict" else self.p

    def is_sensitive(self, word: str) -> bool:
        """Whether ``word`` is a sensitive vocabulary word (always replaced)."""
        i = self.space.index.get(word)
        return i is not None and bool(self._is_sensitive[i])

    def _scores(self, x: Vector) -> NDArray[np.float64]:
        """``-ε d(x, y) / 2`` for every y in ``V_S`` (the unnormalised log-probabilities of
        Eq. 1); one row per row of ``x``."""
        return -0.5 * self.epsilon * distances(x, self._targets, self._targets_sq)

    def _compute(self, batch: list[str]) -> dict[str, NDArray[np.float64]]:
        """Eq. 1 for ``batch``'s vocabulary words, in one matrix product."""
        known = [w for w in dict.fromkeys(batch) if w in self.space.index]
        if not known:
            return {}
        scores = self._scores(self.space.vectors[[self.space.index[w] for w in known]])
        weights = np.exp(scores - scores.max(axis=1, keepdims=True))
        probs = weights / weights.sum(axis=1, keepdims=True)
        return {w: probs[i] for i, w in enumerate(known)}

    def _remember(self, rows: dict[str, NDArray[np.float64]]) -> None:
        with self._lock:
            for word, row in rows.items():
                self._cache[word] = row
                self._cache.move_to_end(word)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def replacement_probabilities(self, word: str) -> NDArray[np.float64]:
        """Eq. 1: ``Pr[y | word]`` over ``self.sensitive`` for a vocabulary word."""
        if word not in self.space.index:
            raise KeyError(f"SanTextPlus: {word!r} is not in the vocabulary")
        with self._lock:
            cached = self._cache.get(word)
            if cached is not None:
                self._cache.move_to_end(word)
                return cached
        rows = self._compute([word])
        self._remember(rows)
        return rows[word]

    def probabilities(self, word: str) -> dict[str, float]:
        """The whole output distribution for ``word``: keeping it, or each replacement."""
        if word not in self.space.index:
            pool = (
                self.all_words
                if self.variant == "reference"
                else [self.space.words[j] for j in self.sensitive]
            )
            out: dict[str, float] = {}
            for y in pool:
                out[y] = out.get(y, 0.0) + 1 / len(pool)
            return out
        replace = 1.0 if self.is_sensitive(word) else self.replace_share
        out = {
            self.space.words[j]: replace * float(q)
            for j, q in zip(self.sensitive, self.replacement_probabilities(word), strict=True)
        }
        if replace < 1:
            out[word] = out.get(word, 0.0) + 1 - replace
        return out

    def context(self, text_words: list[str]) -> None:
        with self._lock:
            missing = [w for w in text_words if w not in self._cache]
        if missing:  # one product for the text's new words, not one per word
            self._remember(self._compute(missing))

    def replace(self, word: str, rng: np.random.Generator, context: Any) -> str:
        if word not in self.space.index:
            if self.variant == "reference":
                return self.all_words[int(rng.integers(len(self.all_words)))]
            return self.space.words[int(self.sensitive[rng.integers(len(self.sensitive))])]
        if not self.is_sensitive(word) and rng.random() > self.replace_share:
            return word
        probs = self.replacement_probabilities(word)
        return self.space.words[int(self.sensitive[rng.choice(len(probs), p=probs)])]
