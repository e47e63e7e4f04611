"""Text sanitisers with differential privacy for the MedMCQA experiment.

Each mechanism is a plain class with a seeded ``numpy.random.Generator``, usable outside
the flow: ``PhraseDP`` (paraphrase selection), ``InferDPT`` (RANTEXT), ``SanTextPlus``,
``CusTextPlus`` and ``CluSanT``. Each takes ``variant="reference"`` (the default: its
authors' code) or ``"strict"`` (spends exactly the ε it is given); ``bound()`` states what
an instance spends.
"""

from flows.medmcqa.privacy.base import (
    STOP_WORDS,
    VARIANTS,
    Sanitised,
    Variant,
    WordMechanism,
    check_variant,
    word_counts,
)
from flows.medmcqa.privacy.clusant import CluSanT, Clustering
from flows.medmcqa.privacy.custext import CusTextMapping, CusTextPlus
from flows.medmcqa.privacy.embedder import (
    Embedder,
    HashedEmbedder,
    MiniLMEmbedder,
    TableEmbedder,
    TokenSpace,
    words,
)
from flows.medmcqa.privacy.inferdpt import InferDPT, noise_divisor
from flows.medmcqa.privacy.phrasedp import BANDS, PhraseDP, clean_candidates, kept_words
from flows.medmcqa.privacy.santext import SanTextPlus

__all__ = [
    "BANDS",
    "STOP_WORDS",
    "VARIANTS",
    "CluSanT",
    "Clustering",
    "CusTextMapping",
    "CusTextPlus",
    "Embedder",
    "HashedEmbedder",
    "InferDPT",
    "MiniLMEmbedder",
    "PhraseDP",
    "SanTextPlus",
    "Sanitised",
    "TableEmbedder",
    "TokenSpace",
    "Variant",
    "WordMechanism",
    "check_variant",
    "clean_candidates",
    "kept_words",
    "noise_divisor",
    "word_counts",
    "words",
]
