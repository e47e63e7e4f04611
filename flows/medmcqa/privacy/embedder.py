"""Embeddings for the privacy mechanisms: sentence vectors and a word vocabulary with vectors.

``Embedder`` is the one interface the mechanisms need: ``sentences(texts)`` for PhraseDP's
similarity, ``token_space()`` (words, their vectors and frequency ranks) for SANTEXT+ and
InferDPT. ``TableEmbedder`` wraps a fixed table (tests build tiny ones); ``HashedEmbedder``
gives any word a seeded random vector (offline runs, no model needed); ``MiniLMEmbedder``
uses all-MiniLM-L6-v2 from the ``ml`` extra: its sentence embeddings, and its word-piece
input embedding matrix (the BERT vocabulary) as the token space.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Vector = NDArray[np.float64]
WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|\d+(?:\.\d+)?")
"""A word of running text: letters (with an apostrophe suffix) or a number."""


def words(text: str) -> list[str]:
    """The lower-cased words of ``text``, in order."""
    return [m.group(0).lower() for m in WORD.finditer(text)]


def replace_words(text: str, replace: Callable[[str], str]) -> str:
    """``text`` with each word replaced by ``replace(word.lower())``; the rest kept as is."""
    return WORD.sub(lambda m: replace(m.group(0).lower()), text)


@dataclass(frozen=True, eq=False)
class TokenSpace:
    """A vocabulary of words with one vector each and a frequency rank (0: most frequent).

    ``oov`` gives a vector for a word outside the vocabulary (None: such words have none);
    sentence vectors use it, the word-level mechanisms do not.
    """

    words: tuple[str, ...]
    vectors: Vector
    ranks: NDArray[np.int64]
    oov: Callable[[str], Vector] | None = None
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.words):
            raise ValueError(
                f"TokenSpace: {len(self.words)} words need a ({len(self.words)}, dim) matrix, "
                f"got shape {self.vectors.shape}"
            )
        if len(self.ranks) != len(self.words):
            raise ValueError("TokenSpace: give one rank per word")
        object.__setattr__(self, "index", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def from_table(
        cls, table: dict[str, Sequence[float]], ranks: Sequence[int] | None = None
    ) -> TokenSpace:
        """A space from ``{word: vector}``; ranks default to the table's order."""
        order = list(table)
        return cls(
            tuple(order),
            np.asarray([table[w] for w in order], dtype=np.float64),
            np.asarray(ranks if ranks is not None else range(len(order)), dtype=np.int64),
        )

    def vector(self, word: str) -> Vector | None:
        """The word's vector: its row, else the ``oov`` vector, else None."""
        i = self.index.get(word)
        if i is not None:
            return self.vectors[i]
        return self.oov(word) if self.oov is not None else None


def distances(points: Vector, matrix: Vector, matrix_sq: Vector | None = None) -> Vector:
    """Euclidean distances from each row of ``points`` (k, dim) to each row of ``matrix``,
    as one matrix product (``matrix_sq``: the rows' squared norms, when already known)."""
    if matrix_sq is None:
        matrix_sq = np.einsum("ij,ij->i", matrix, matrix)
    points = np.atleast_2d(points)
    sq = np.einsum("ij,ij->i", points, points)[:, None] + matrix_sq[None, :]
    return np.sqrt(np.maximum(sq - 2 * points @ matrix.T, 0.0))


class Embedder(Protocol):
    """What the privacy mechanisms need from an embedding model."""

    def sentences(self, texts: Sequence[str]) -> Vector:
        """One unit-length row per text."""
        ...

    def token_space(self) -> TokenSpace:
        """The word vocabulary the word-level mechanisms draw replacements from."""
        ...

    def fingerprint(self) -> str:
        """A short text that changes whenever the embeddings do (part of a cell's key)."""
        ...


def _unit_rows(matrix: Vector) -> Vector:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


class TableEmbedder:
    """A fixed token space; a sentence is the normalised mean of its known words' vectors."""

    def __init__(self, space: TokenSpace) -> None:
        self.space = space

    def token_space(self) -> TokenSpace:
        return self.space

    def fingerprint(self) -> str:
        """A digest of the words and their vectors."""
        digest = hashlib.blake2b(digest_size=8)
        digest.update("\n".join(self.space.words).encode())
        digest.update(np.ascontiguousarray(self.space.vectors, dtype=np.float64).tobytes())
        return f"table:{digest.hexdigest()}"

    def sentences(self, texts: Sequence[str]) -> Vector:
        dim = self.space.vectors.shape[1]
        rows = []
        for text in texts:
            found = [v for v in map(self.space.vector, words(text)) if v is not None]
            rows.append(np.mean(found, axis=0) if found else np.zeros(dim))
        return _unit_rows(np.asarray(rows, dtype=np.float64).reshape(len(texts), dim))


def hashed_vector(word: str, dim: int, seed: int = 0) -> Vector:
    """A standard normal vector drawn from a generator seeded by the word's digest."""
    digest = hashlib.blake2b(f"{seed}:{word}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little")).standard_normal(dim)


class HashedEmbedder(TableEmbedder):
    """Offline stand-in: every word has a seeded random vector of ``dim`` dimensions.

    The vocabulary is the words of ``corpus`` ranked by how often they occur there, so a
    sentence vector measures word overlap rather than meaning: enough for offline runs and
    tests of the mechanisms' mechanics, not for conclusions about real utility.
    """

    def __init__(self, corpus: Iterable[str], *, dim: int = 64, seed: int = 0) -> None:
        counts: dict[str, int] = {}
        for text in corpus:
            for word in words(text):
                counts[word] = counts.get(word, 0) + 1
        if not counts:
            raise ValueError("HashedEmbedder: the corpus has no words")
        vocab = sorted(counts, key=lambda w: (-counts[w], w))
        super().__init__(
            TokenSpace(
                tuple(vocab),
                np.asarray([hashed_vector(w, dim, seed) for w in vocab]),
                np.arange(len(vocab), dtype=np.int64),
                oov=lambda w: hashed_vector(w, dim, seed),
            )
        )


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``ml`` extra, loaded offline on first use.

    Sentences: the model's normalised sentence embeddings. Token space: the whole-word
    entries of its BERT word-piece vocabulary (letters only, two characters or more, or
    numbers), each with its row of the input embedding matrix; the vocabulary's order is
    BERT's, roughly by frequency, and serves as the frequency rank where no corpus counts are
    given. ``oov`` gives a word outside it the mean of its word pieces' rows (for sentence
    vectors; the mechanisms treat such a word as unknown, as their authors' code does).
    """

    def __init__(self, model: str | None = None, device: str = "cpu") -> None:
        from nodes.models import SentenceEncoder

        self.encoder = SentenceEncoder(model=model, device=device)
        self._space: TokenSpace | None = None
        self._lock = threading.Lock()

    def sentences(self, texts: Sequence[str]) -> Vector:
        return np.asarray(self.encoder(list(texts)), dtype=np.float64)

    def fingerprint(self) -> str:
        return f"minilm:{self.encoder.model or 'all-MiniLM-L6-v2'}"

    def token_space(self) -> TokenSpace:
        with self._lock:
            if self._space is None:
                self._space = self._build()
            return self._space

    def _build(self) -> TokenSpace:
        model: Any = self.encoder.load()
        tokenizer = model.tokenizer
        matrix = model[0].auto_model.get_input_embeddings().weight.detach().cpu().numpy()
        keep = re.compile(r"[a-z]{2,}|\d+")
        vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        chosen = [(w, i) for w, i in vocab if keep.fullmatch(w)]
        table = np.asarray(matrix, dtype=np.float64)

        def oov(word: str) -> Vector:
            ids = tokenizer(word, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id]
            return table[ids].mean(axis=0)

        return TokenSpace(
            tuple(w for w, _ in chosen),
            table[[i for _, i in chosen]],
            np.arange(len(chosen), dtype=np.int64),
            oov=oov,
        )
