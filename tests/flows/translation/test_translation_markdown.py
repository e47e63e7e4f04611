"""Markdown prepared for translation: what must not change comes back byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.translation.markdown import Document, PlaceholderError, check_placeholders
from nodes.llm import fake_translation

FRONT_MATTER = "---\ntitle: Guide\ntags: [a, b]\n---\n"
FENCED = '```python\nprint("hello")  # a comment\n\nx = [1, 2]\n```'
TILDES = "~~~\n# not a heading\n~~~"
INDENTED = "    for item in items:\n        print(item)"
PROTECTED = [
    FRONT_MATTER,
    FENCED,
    TILDES,
    INDENTED,
    "`pip install flowkit`",
    "``a `tick` inside``",
    '(https://example.com/docs "The docs")',
    "(pic.png)",
    "https://example.com/wiki/Python_(language)",
    "<https://auto.example.com>",
    "<br/>",
    "[ref]",
    '[ref]: https://example.com/ref "Ref"',
]
DOCUMENT = f"""{FRONT_MATTER}
# Getting started

Install with `pip install flowkit`, then read [the docs](https://example.com/docs "The docs").
See https://example.com/wiki/Python_(language). Or mail <https://auto.example.com>.<br/>

{FENCED}

{TILDES}

Indented code follows.

{INDENTED}

- A list item. With two sentences!
- An item with ``a `tick` inside`` and a [reference][ref].

![A picture](pic.png)

[ref]: https://example.com/ref "Ref"
"""


def translate(doc: Document, language: str = "French") -> str:
    return doc.assemble([fake_translation(c.text, language) for c in doc.chunks])


@pytest.mark.parametrize("max_chars", [40, 2000])
def test_protected_spans_survive_byte_for_byte(max_chars: int) -> None:
    doc = Document.parse(DOCUMENT, max_chars)
    translated = translate(doc)
    for span in PROTECTED:
        assert span in translated
    assert translated.startswith(FRONT_MATTER)
    assert "# [French] Getting started" in translated
    assert "- [French] A list item. [French] With two sentences!" in translated
    assert "[French] Indented code follows." in translated


def test_nothing_protected_is_sent() -> None:
    sent = "".join(c.text for c in Document.parse(DOCUMENT).chunks)
    for span in PROTECTED:
        assert span not in sent


def test_untranslated_chunks_reassemble_to_the_document() -> None:
    doc = Document.parse(DOCUMENT, 40)
    assert len(doc.chunks) > 3
    assert doc.assemble([c.text for c in doc.chunks]) == DOCUMENT


def test_chunks_split_at_paragraphs_and_headings_never_inside_code() -> None:
    text = "\n\n".join(["# One", "a" * 30, "b" * 30, FENCED, "## Two", "c" * 30]) + "\n"
    doc = Document.parse(text, max_chars=45)
    assert [c.text.split("\n")[0] for c in doc.chunks] == ["# One", "b" * 30, "## Two"]
    assert FENCED in doc.spans  # the block, blank line and all, is one unsplittable span


def test_windows_line_endings_round_trip() -> None:
    text = DOCUMENT.replace("\n", "\r\n")
    doc = Document.parse(text, 60)
    assert doc.assemble([c.text for c in doc.chunks]) == text
    translated = translate(doc)
    for span in PROTECTED:
        assert span.replace("\n", "\r\n") in translated


def test_text_that_looks_like_a_placeholder_is_kept() -> None:
    doc = Document.parse("Keep ⟦0⟧ and ⟦12⟧ as written.\n")
    assert translate(doc) == "[French] Keep ⟦0⟧ and ⟦12⟧ as written.\n"


def test_a_translation_must_keep_every_placeholder_once() -> None:
    check_placeholders("a ⟦1⟧ b ⟦2⟧", "x ⟦2⟧ y ⟦1⟧", "French chunk 0")
    with pytest.raises(PlaceholderError, match=r"French chunk 3: the translation lost ⟦2⟧"):
        check_placeholders("a ⟦1⟧ b ⟦2⟧", "x ⟦1⟧", "French chunk 3")
    with pytest.raises(PlaceholderError, match=r"invented ⟦9⟧; repeated ⟦1⟧"):
        check_placeholders("a ⟦1⟧", "⟦1⟧ ⟦1⟧ ⟦9⟧", "chunk")


PIECES = [*"ab .!#-*>|`~[]()<>/:⟦⟧1\n\t\r", "http://x.y", "    ", "```", "---\n", "[a]: b"]
MARKDOWNISH = st.lists(st.sampled_from(PIECES), max_size=120).map("".join)


@given(MARKDOWNISH, st.integers(min_value=1, max_value=200))
@settings(max_examples=300, deadline=None)
def test_any_text_round_trips(text: str, max_chars: int) -> None:
    doc = Document.parse(text, max_chars)
    assert doc.assemble([c.text for c in doc.chunks]) == text


@given(MARKDOWNISH)
@settings(max_examples=300, deadline=None)
def test_a_fake_translation_keeps_every_protected_span(text: str) -> None:
    doc = Document.parse(text, 50)
    translated = translate(doc)
    for span in doc.spans:
        assert span in translated
