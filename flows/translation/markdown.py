"""Markdown prepared for translation: protected spans, chunks, and exact reassembly.

What a translator must not touch (front matter, fenced and indented code blocks, inline
code, link destinations and reference labels, link reference definitions, autolinks, HTML
tags and comments, bare URLs) is swapped for numbered placeholders such as ``⟦3⟧`` before
the text is sent, and swapped back afterwards. The rest is cut into chunks at paragraph
and heading boundaries; the whitespace around each chunk never leaves this module, so
joining the chunks' translations rebuilds the document's layout byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from flowkit.errors import FlowkitError

PLACEHOLDER = re.compile(r"⟦(\d+)⟧")

_FRONT_MATTER = re.compile(
    r"(?:---[ \t\r]*\n.*?\n(?:---|\.\.\.)|\+\+\+[ \t\r]*\n.*?\n\+\+\+)[ \t\r]*(?:\n|$)", re.S
)
_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})")
_INDENTED = re.compile(r" {4}| {0,3}\t")
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
_REFERENCE_DEFINITION = re.compile(r" {0,3}\[(?!\^)[^\]\n]+\]:[ \t]*\S")
_BLANK = re.compile(r"[ \t\r]*\n?")
_LINE = re.compile(r"[^\n]*\n|[^\n]+")
_INLINE = re.compile(
    r"""
      ⟦\d+⟧                                        # text that looks like a placeholder
    | (?<!`)(?P<ticks>`+)(?:[^`\n]|\n(?![ \t\r]*\n)|(?!(?P=ticks))`+)+?(?P=ticks)(?!`)
                                                    # code span
    | <!--.*?-->                                    # HTML comment
    | <[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*>       # autolink
    | </?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>      # HTML tag
    | (?<=\])\((?:<[^<>\n]*>|(?:[^\s()]|\([^\s()]*\))*)
        (?:\s+(?:"[^"\n]*"|'[^'\n]*'|\([^()\n]*\)))?[ \t]*\)  # link or image destination
    | (?<=\])\[[^\[\]\n]*\]                         # reference link label
    | (?P<url>(?:https?|ftp)://[^\s<>"'`\[\]]+)     # bare URL
    """,
    re.S | re.X,
)
_URL_TRAILER = frozenset(".,;:!?*_'\"")
_BOUNDARY = re.compile(r"\n(?:[ \t\r]*\n)+|\n(?= {0,3}#{1,6}(?:[ \t\r]|\n|$))")
_LETTER = re.compile(r"[^\W\d_]")


class PlaceholderError(FlowkitError, ValueError):
    """A translated chunk lost, duplicated or invented placeholders."""


@dataclass(frozen=True)
class Chunk:
    """A piece of the protected text: ``text`` is what is translated, ``lead`` and ``trail``
    the whitespace around it that is kept as is."""

    lead: str
    text: str
    trail: str

    @property
    def translatable(self) -> bool:
        """Whether any words are left once the placeholders are taken out."""
        return bool(_LETTER.search(PLACEHOLDER.sub("", self.text)))


@dataclass(frozen=True)
class Document:
    """A markdown document ready to translate: front matter, chunks, protected spans."""

    front_matter: str
    chunks: tuple[Chunk, ...]
    spans: tuple[str, ...]

    @classmethod
    def parse(cls, markdown: str, max_chars: int = 2000) -> Document:
        """Protect ``markdown`` and cut it into chunks of about ``max_chars`` characters."""
        front = _FRONT_MATTER.match(markdown)
        front_matter = front.group(0) if front else ""
        spans: list[str] = []
        text = protect(markdown[len(front_matter) :], spans)
        return cls(front_matter, tuple(split_chunks(text, max_chars)), tuple(spans))

    def assemble(self, translations: Sequence[str]) -> str:
        """The document with each chunk's text replaced by ``translations[i]`` (one per
        chunk, in order) and every span restored; PlaceholderError names the first chunk
        whose placeholders do not match."""
        if len(translations) != len(self.chunks):
            raise ValueError(f"expected {len(self.chunks)} translations, got {len(translations)}")
        parts = [self.front_matter]
        for index, (chunk, translated) in enumerate(zip(self.chunks, translations, strict=True)):
            check_placeholders(chunk.text, translated, f"chunk {index}")
            parts += [chunk.lead, translated.strip(), chunk.trail]
        return restore("".join(parts), self.spans)


def protect(text: str, spans: list[str]) -> str:
    """``text`` with each protected span replaced by ``⟦n⟧``, its original appended to
    ``spans`` (n is its index there)."""

    def hold(original: str) -> str:
        spans.append(original)
        return f"⟦{len(spans) - 1}⟧"

    def swap(match: re.Match[str]) -> str:
        url = match.group("url")
        if url is None:
            return hold(match.group(0))
        end = len(url)  # trailing punctuation ends the sentence, not the URL
        while url[end - 1] in _URL_TRAILER or (
            url[end - 1] == ")" and url.count("(", 0, end) < url.count(")", 0, end)
        ):
            end -= 1
        return hold(url[:end]) + url[end:]

    def inline(paragraphs: str) -> str:
        return _INLINE.sub(swap, paragraphs)

    lines = _LINE.findall(text)
    out: list[str] = []
    prose: list[str] = []
    previous = ""  # the last non-blank line, to tell indented code from list content
    i = 0
    while i < len(lines):
        line = lines[i]
        end = _block_end(lines, i, previous, bool(prose) and not _is_blank(prose[-1]))
        if end is None:
            prose.append(line)
            if not _is_blank(line):
                previous = line
            i += 1
            continue
        out.append(inline("".join(prose)))
        prose = []
        block = "".join(lines[i:end])
        body = block.rstrip("\r\n")
        out.append(hold(body) + block[len(body) :])
        previous = lines[end - 1]
        i = end
    out.append(inline("".join(prose)))
    return "".join(out)


def _block_end(lines: list[str], i: int, previous: str, in_paragraph: bool) -> int | None:
    """Where a protected block starting at ``lines[i]`` ends (exclusive), or None."""
    line = lines[i]
    fence = _FENCE.match(line)
    if fence and not (fence.group(1)[0] == "`" and "`" in line[fence.end() :]):
        mark = fence.group(1)
        close = re.compile(rf"[ \t]*{re.escape(mark[0])}{{{len(mark)},}}[ \t\r]*\n?")
        for j in range(i + 1, len(lines)):
            if close.fullmatch(lines[j]):
                return j + 1
        return len(lines)  # an unclosed fence runs to the end of the document
    if _REFERENCE_DEFINITION.match(line):
        return i + 1
    if (
        _INDENTED.match(line)
        and not _is_blank(line)
        and not in_paragraph
        and not _LIST_ITEM.match(previous)
        and not _INDENTED.match(previous)
    ):
        j = i + 1
        while j < len(lines) and (_INDENTED.match(lines[j]) or _is_blank(lines[j])):
            j += 1
        while _is_blank(lines[j - 1]):
            j -= 1
        return j
    return None


def _is_blank(line: str) -> bool:
    return _BLANK.fullmatch(line) is not None


def split_chunks(text: str, max_chars: int) -> list[Chunk]:
    """Cut ``text`` at blank lines and before headings into chunks of at most ``max_chars``
    (a longer single block stays whole); a heading starts a new chunk once the current one
    is half full."""
    blocks = _BOUNDARY.split(text)
    separators = _BOUNDARY.findall(text)
    groups: list[list[str]] = [[]]  # each: block, separator, block, ... (separator last)
    size = 0
    for k, block in enumerate(blocks):
        if k:
            groups[-1].append(separators[k - 1])
            heading = block.lstrip(" ").startswith("#")
            if size and (size + len(block) > max_chars or (heading and 2 * size >= max_chars)):
                groups.append([])
                size = 0
        groups[-1].append(block)
        size += len(block)
    return [_chunk("".join(group)) for group in groups]


def _chunk(raw: str) -> Chunk:
    core = raw.strip()
    if not core:
        return Chunk(raw, "", "")
    start = raw.index(core)
    return Chunk(raw[:start], core, raw[start + len(core) :])


def check_placeholders(original: str, translated: str, where: str) -> None:
    """Raise PlaceholderError unless ``translated`` holds exactly the placeholders of
    ``original``, each once."""
    expected = sorted(PLACEHOLDER.findall(original))
    found = sorted(PLACEHOLDER.findall(translated))
    if found != expected:
        missing = sorted(set(expected) - set(found), key=int)
        extra = sorted(set(found) - set(expected), key=int)
        repeated = sorted({n for n in found if found.count(n) > 1}, key=int)
        problems = [
            f"{label} {', '.join(f'⟦{n}⟧' for n in numbers)}"
            for label, numbers in (("lost", missing), ("invented", extra), ("repeated", repeated))
            if numbers
        ]
        raise PlaceholderError(f"{where}: the translation {'; '.join(problems)}")


def restore(text: str, spans: Sequence[str]) -> str:
    """``text`` with every placeholder replaced by its original span."""
    return PLACEHOLDER.sub(lambda m: spans[int(m.group(1))], text)
