"""SANTEXT+ (Yue et al., 2021): word-level metric DP over an embedding vocabulary.

The least frequent fraction ``w`` of the vocabulary is *sensitive*. Each word of the text
is sanitised on its own:

- a sensitive word (or one outside the vocabulary) is always replaced;
- any other word is kept with probability ``1 - p``, else replaced;
- a replacement ``y`` is drawn from the sensitive set with
  ``Pr[y | x] ∝ exp(-ε · d(x, y) / 2)``, ``d`` the Euclidean distance of the embeddings.

The replacement draw is ε·d metric DP: for any words x, x' and output y,
``|log Pr[y|x] - log Pr[y|x']| <= ε · d(x, x')``. Non-sensitive words that are kept carry no
guarantee: that is SANTEXT+'s trade-off. Defaults follow the paper: ``p = 0.3``,
``w = 0.9``. A word with no vector at all (a table without an out-of-vocabulary rule) is
replaced by a uniform draw from the sensitive set, which reveals nothing about it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from numpy.typing import NDArray

from flows.medmcqa.privacy.embedder import TokenSpace, Vector, distances, replace_words, words


class SanTextPlus:
    """SANTEXT+ at budget ``epsilon``; ``rng`` (a seed or a Generator) drives the draws that
    are not given a generator of their own. Distributions are cached per word (thread-safe),
    so one instance can serve many texts, each with its own seeded generator."""

    name = "santext+"

    def __init__(
        self,
        space: TokenSpace,
        epsilon: float,
        *,
        p: float = 0.3,
        w: float = 0.9,
        rng: np.random.Generator | int | None = None,
        cache_size: int = 128,
    ) -> None:
        if not epsilon > 0:
            raise ValueError(f"SanTextPlus: epsilon must be positive, got {epsilon}")
        if not 0 <= p <= 1 or not 0 < w <= 1:
            raise ValueError(f"SanTextPlus: need 0 <= p <= 1 and 0 < w <= 1, got p={p}, w={w}")
        self.space, self.epsilon, self.p, self.w = space, float(epsilon), p, w
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        n = len(space.words)
        count = max(1, round(w * n))
        rarest = np.argsort(space.ranks, kind="stable")[n - count :]
        self.sensitive: NDArray[np.int64] = np.sort(rarest)
        """Indices (into the vocabulary) of the sensitive words: the outputs of a replacement."""
        self._is_sensitive = np.zeros(n, dtype=bool)
        self._is_sensitive[self.sensitive] = True
        self._targets = space.vectors[self.sensitive]
        self._targets_sq = np.einsum("ij,ij->i", self._targets, self._targets)
        self._cache: OrderedDict[str, NDArray[np.float64] | None] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def is_sensitive(self, word: str) -> bool:
        """Whether ``word`` is always replaced: a rare vocabulary word or an unknown one."""
        i = self.space.index.get(word)
        return True if i is None else bool(self._is_sensitive[i])

    def _scores(self, x: Vector) -> NDArray[np.float64]:
        """``-ε d(x, y) / 2`` for every sensitive word y (the unnormalised log-probabilities);
        one row per row of ``x``."""
        return -0.5 * self.epsilon * distances(x, self._targets, self._targets_sq)

    def _compute(self, batch: list[str]) -> dict[str, NDArray[np.float64] | None]:
        """The replacement distributions of ``batch``'s words, in one matrix product."""
        found = [(w, v) for w in dict.fromkeys(batch) if (v := self.space.vector(w)) is not None]
        out: dict[str, NDArray[np.float64] | None] = dict.fromkeys(batch)
        if found:
            scores = self._scores(np.asarray([v for _, v in found]))
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            probs = weights / weights.sum(axis=1, keepdims=True)
            out.update((w, probs[i]) for i, (w, _) in enumerate(found))
        return out

    def _remember(self, rows: dict[str, NDArray[np.float64] | None]) -> None:
        with self._lock:
            for word, row in rows.items():
                self._cache[word] = row
                self._cache.move_to_end(word)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def replacement_probabilities(self, word: str) -> NDArray[np.float64]:
        """``Pr[y | word]`` over ``self.sensitive`` for a replacement (closed form)."""
        with self._lock:
            hit = word in self._cache
            cached = self._cache.get(word)
            if hit:
                self._cache.move_to_end(word)
        if not hit:
            rows = self._compute([word])
            self._remember(rows)
            cached = rows[word]
        if cached is None:
            return np.full(len(self.sensitive), 1 / len(self.sensitive))
        return cached

    def probabilities(self, word: str) -> dict[str, float]:
        """The whole output distribution for ``word``: keeping it, or each replacement."""
        replace = 1.0 if self.is_sensitive(word) else self.p
        out = {
            self.space.words[j]: replace * float(q)
            for j, q in zip(self.sensitive, self.replacement_probabilities(word), strict=True)
        }
        if replace < 1:
            out[word] = out.get(word, 0.0) + 1 - replace
        return out

    def sanitise_word(self, word: str, rng: np.random.Generator | None = None) -> str:
        """One draw of the mechanism for a single (lower-case) word."""
        rng = rng or self.rng
        if not self.is_sensitive(word) and rng.random() >= self.p:
            return word
        probs = self.replacement_probabilities(word)
        return self.space.words[int(self.sensitive[rng.choice(len(probs), p=probs)])]

    def sanitise(self, text: str, rng: np.random.Generator | None = None) -> str:
        """``text`` with every word sanitised independently; spacing and punctuation kept."""
        with self._lock:
            missing = [w for w in words(text) if w not in self._cache]
        if missing:  # one product for the text's new words, not one per word
            self._remember(self._compute(missing))
        return replace_words(text, lambda word: self.sanitise_word(word, rng))
