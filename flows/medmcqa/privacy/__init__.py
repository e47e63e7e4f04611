"""Text sanitisers with differential privacy for the MedMCQA experiment.

Each mechanism is a plain class with a seeded ``numpy.random.Generator``, usable outside
the flow: ``PhraseDP`` (paraphrase selection), ``InferDPT`` (RANTEXT) and ``SanTextPlus``.
"""

from flows.medmcqa.privacy.embedder import (
    Embedder,
    HashedEmbedder,
    MiniLMEmbedder,
    TableEmbedder,
    TokenSpace,
    words,
)
from flows.medmcqa.privacy.inferdpt import InferDPT
from flows.medmcqa.privacy.phrasedp import BANDS, PhraseDP, clean_candidates
from flows.medmcqa.privacy.santext import SanTextPlus

__all__ = [
    "BANDS",
    "Embedder",
    "HashedEmbedder",
    "InferDPT",
    "MiniLMEmbedder",
    "PhraseDP",
    "SanTextPlus",
    "TableEmbedder",
    "TokenSpace",
    "clean_candidates",
    "words",
]
