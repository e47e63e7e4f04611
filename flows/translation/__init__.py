"""Translate a markdown document into many languages in parallel, saving each one.

From Python: ``translate_document("README.md", ["French", "German"], "out/")``; from a
shell: ``flowkit run translation --input README.md --languages French,German --output out``.
"""

from flows.translation.flow import (
    TranslationInputError,
    TranslationResult,
    translate_document,
    translation_flow,
)
from flows.translation.markdown import Document, PlaceholderError

__all__ = [
    "Document",
    "PlaceholderError",
    "TranslationInputError",
    "TranslationResult",
    "translate_document",
    "translation_flow",
]
