"""What the word-level mechanisms share: the reference/strict switch and the word loop.

Every mechanism takes ``variant``: ``"reference"`` (the default) behaves as its authors'
code, so the numbers compare with theirs; ``"strict"`` spends exactly the ε it is given,
by the analysis its class docstring states. ``WordMechanism`` runs a word-level mechanism
over a text and counts the question's words it left unchanged.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from flows.medmcqa.privacy.embedder import WORD, TokenSpace, words

Variant = Literal["reference", "strict"]
VARIANTS: tuple[Variant, ...] = ("reference", "strict")
"""``reference``: the authors' code; ``strict``: spends exactly ε."""

_NLTK_ENGLISH = """
    i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself
    yourselves he him his himself she she's her hers herself it it's its itself they them
    their theirs themselves what which who whom this that that'll these those am is are was
    were be been being have has had having do does did doing a an the and but if or because
    as until while of at by for with about against between into through during before after
    above below to from up down in out on off over under again further then once here there
    when where why how all any both each few more most other some such no nor not only own
    same so than too very s t can will just don don't should should've now d ll m o re ve y
    ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven
    haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn
    shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
"""
STOP_WORDS = frozenset(_NLTK_ENGLISH.split())
"""NLTK's English stop-word list (179 words): the words CusText+ keeps as they are."""

_SPACES = re.compile(r"[ \t]{2,}")


def check_variant(variant: str, owner: str) -> Variant:
    """``variant`` if it is one of ``VARIANTS``; else a ValueError naming ``owner``."""
    if variant not in VARIANTS:
        raise ValueError(
            f"{owner}: variant must be 'reference' (the authors' code) or 'strict' (spends "
            f"exactly ε), got {variant!r}"
        )
    return variant


def check_epsilon(epsilon: float, owner: str) -> float:
    """``epsilon`` as a float if it is a positive finite number; else a ValueError."""
    if not 0 < epsilon < math.inf:
        raise ValueError(f"{owner}: epsilon must be a positive number, got {epsilon}")
    return float(epsilon)


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A generator: ``rng`` itself, or one seeded by it."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def is_number(word: str) -> bool:
    """Whether a word of ``words()`` is a number (digits, maybe with a decimal part)."""
    return word[:1].isdigit()


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """How often each word occurs in ``texts``; the keys keep the order of first sight."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(words(text))
    return counts


def by_frequency(space: TokenSpace, frequencies: Mapping[str, int] | None) -> list[str]:
    """Words from most to least frequent, as SanText and CusText rank them.

    With ``frequencies`` (counts in the task's corpus): the corpus words and the
    vocabulary's, each counted as in the corpus plus one if the vocabulary has it (SanText's
    ``vocab`` with a BERT vocabulary), in ``Counter.most_common`` order (ties: corpus words
    first, in order of first sight, then the vocabulary's order). Without: the vocabulary in
    the order of its frequency ranks.
    """
    if frequencies is None:
        return [space.words[i] for i in np.argsort(space.ranks, kind="stable")]
    counts: Counter[str] = Counter()
    for word, count in frequencies.items():
        counts[word] += count
    for word in space.words:
        counts[word] += 1
    return [word for word, _ in counts.most_common()]


def digest_counts(frequencies: Mapping[str, int] | None) -> str | None:
    """A short stable digest of a corpus's word counts (None for none)."""
    if frequencies is None:
        return None
    text = "\n".join(f"{w}\t{c}" for w, c in frequencies.items())
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def median_distance(vectors: np.ndarray, pairs: int = 4000, seed: int = 0) -> float:
    """The median Euclidean distance between two different rows of ``vectors``, from a
    seeded sample of ``pairs`` pairs (all pairs when there are fewer)."""
    n = len(vectors)
    if n < 2:
        return 0.0
    if n * (n - 1) // 2 <= pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(n, size=pairs)
        j = (i + rng.integers(1, n, size=pairs)) % n
    return float(np.median(np.linalg.norm(vectors[i] - vectors[j], axis=1)))


@dataclass(frozen=True)
class Sanitised:
    """A sanitised text and how many of the original's words it left unchanged."""

    text: str
    kept: int
    words: int

    @property
    def kept_share(self) -> float:
        return self.kept / self.words if self.words else 1.0


class WordMechanism:
    """Base of the word-level mechanisms: each word is replaced on its own.

    Subclasses define ``replace(word, rng, context)`` (one draw for a lower-case word; an
    empty string drops the word) and may define ``context(words)``, work shared by one
    text's words (e.g. their distances to the vocabulary in one matrix product). Both take
    everything they need as arguments, so one instance serves many threads at once.
    """

    name = ""
    space: TokenSpace
    epsilon: float
    variant: Variant
    rng: np.random.Generator

    def context(self, text_words: list[str]) -> Any:
        """Work shared by one text's words; None by default."""
        return None

    def replace(self, word: str, rng: np.random.Generator, context: Any) -> str:
        raise NotImplementedError

    def sanitise_word(self, word: str, rng: np.random.Generator | None = None) -> str:
        """One draw of the mechanism for a single (lower-case) word."""
        return self.replace(word, rng or self.rng, self.context([word]))

    def sanitised(self, text: str, rng: np.random.Generator | None = None) -> Sanitised:
        """``text`` with every word replaced independently (spacing and punctuation kept;
        a dropped word takes one space with it), and the count of words left unchanged."""
        rng = rng or self.rng
        context = self.context(words(text))
        kept = total = 0
        dropped = False

        def one(match: re.Match[str]) -> str:
            nonlocal kept, total, dropped
            word = match.group(0).lower()
            out = self.replace(word, rng, context)
            total += 1
            kept += out == word
            dropped = dropped or not out
            return out

        new = WORD.sub(one, text)
        return Sanitised(_SPACES.sub(" ", new).strip() if dropped else new, kept, total)

    def sanitise(self, text: str, rng: np.random.Generator | None = None) -> str:
        """``text`` with every word replaced independently; spacing and punctuation kept."""
        return self.sanitised(text, rng).text

    def uniform_word(self, rng: np.random.Generator) -> str:
        """A vocabulary word drawn uniformly: reveals nothing about the word it replaces."""
        return self.space.words[int(rng.integers(len(self.space.words)))]

    def bound(self) -> str:
        """The privacy this instance spends per word, in words and numbers."""
        raise NotImplementedError
