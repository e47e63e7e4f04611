"""The translation flow: one markdown document into many languages at once.

``Prepare`` reads the document, protects code, links and front matter, and cuts it into
chunks; ``TranslateChunks`` translates every chunk into every language in parallel, within
the runner's ``llm`` limits; ``SaveTranslations`` reassembles each language in order and
writes it atomically. A language with a failed chunk is reported in the result and the
others are still saved.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import aiofiles
from pydantic import BaseModel

import flowkit as fk
from flowkit.errors import FlowkitError
from flowkit.files import check_target, ensure_dir
from flows.translation.markdown import Document, PlaceholderError, check_placeholders
from nodes.files import safe_filename, write_text_atomic
from nodes.llm import LLMSettings, ParallelLLMNode, fake_translation

DEFAULT_LIMIT = fk.Limit(max_concurrency=8)
"""The LLM limit ``translate_document`` runs under when given no runner."""

SYSTEM_PROMPT = (
    "Translate the user's Markdown into {language}. Keep the Markdown structure exactly: "
    "headings, lists, tables, emphasis, line breaks and blank lines. Tokens like ⟦7⟧ stand "
    "for code, links and URLs: copy each one unchanged, exactly once, where it belongs. "
    "Reply with the translation only."
)


class TranslationInputError(FlowkitError, ValueError):
    """The languages asked for cannot be translated: none given, or two share a file."""


class TranslationResult(BaseModel):
    """Where each language was saved, and why each failed language failed."""

    saved: dict[str, Path]
    failed: dict[str, str]
    chunks: int


class ChunkJob(NamedTuple):
    """One chunk of the document to translate into one language."""

    language: str
    chunk: int
    text: str


def check_languages(languages: Iterable[str]) -> list[str]:
    """The languages stripped and without repeats (ignoring case); refuses an empty list."""
    unique: dict[str, str] = {}
    for language in languages:
        name = language.strip()
        if name:
            unique.setdefault(name.casefold(), name)
    if not unique:
        raise TranslationInputError("no languages given: name at least one, e.g. French")
    return list(unique.values())


def output_paths(source: Path, languages: Sequence[str], output: Path) -> dict[str, Path]:
    """Where each language's translation goes: ``OUTPUT/STEM.LANGUAGE.SUFFIX``, made safe.

    Each target is checked now, before any work: a symbolic link planted there, or a
    folder, is refused with a one-line ``flowkit.errors.OutputError``."""
    paths: dict[str, Path] = {}
    taken: dict[str, str] = {}
    folder = ensure_dir(output.resolve())  # the folder given is trusted; links in it are not
    for language in languages:
        name = safe_filename(f"{source.stem}.{language}{source.suffix or '.md'}")
        if name.casefold() in taken:
            raise TranslationInputError(
                f"languages {taken[name.casefold()]!r} and {language!r} would both be saved "
                f"as {name}; rename one"
            )
        taken[name.casefold()] = language
        paths[language] = check_target(folder / name)
    return paths


class Prepare(fk.AsyncNode):
    """Checks the languages and output names, reads ``shared["source"]`` and splits it."""

    checkpoint = False

    def __init__(self, *, max_chars: int = 2000, **options: Any) -> None:
        super().__init__(**options)
        self.max_chars = max_chars

    async def prep_async(self, shared: dict[str, Any]) -> tuple[str, list[str], dict[str, Path]]:
        source = Path(shared["source"])
        languages = check_languages(shared["languages"])
        async with aiofiles.open(source, encoding="utf-8", newline="") as handle:
            text = await handle.read()
        return text, languages, output_paths(source, languages, Path(shared["output"]))

    async def exec_async(self, prep_res: tuple[str, list[str], dict[str, Path]]) -> Document:
        return Document.parse(prep_res[0], self.max_chars)

    async def post_async(
        self,
        shared: dict[str, Any],
        prep_res: tuple[str, list[str], dict[str, Path]],
        doc: Document,
    ) -> None:
        _, shared["languages"], shared["paths"] = prep_res
        shared["document"] = doc


class TranslateChunks(ParallelLLMNode):
    """Every translatable chunk into every language, in parallel.

    A reply that loses or invents placeholders is asked again once; a chunk that still
    fails is collected, failing its language only.
    """

    on_error = "collect"
    retry = fk.Retry(attempts=2, initial=0, jitter=0, retry_on=(PlaceholderError,))

    async def prep_async(self, shared: dict[str, Any]) -> list[ChunkJob]:
        doc: Document = shared["document"]
        return [
            ChunkJob(language, index, chunk.text)
            for language in shared["languages"]
            for index, chunk in enumerate(doc.chunks)
            if chunk.translatable
        ]

    async def exec_async(self, job: ChunkJob) -> str:
        text = await self.llm.chat(
            job.text,
            system=SYSTEM_PROMPT.format(language=job.language),
            simulate=lambda: fake_translation(job.text, job.language),
        )
        check_placeholders(job.text, text, f"{job.language} chunk {job.chunk}")
        return text

    async def post_async(
        self, shared: dict[str, Any], jobs: list[ChunkJob], results: list[Any]
    ) -> None:
        doc: Document = shared["document"]
        chunks = {language: [c.text for c in doc.chunks] for language in shared["languages"]}
        failed: dict[str, str] = {}
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, fk.ErrorRecord):
                failed.setdefault(job.language, f"{result.error_type}: {result.message}")
            else:
                chunks[job.language][job.chunk] = result
        shared["translated"] = {k: v for k, v in chunks.items() if k not in failed}
        shared["failed"] = failed


class SaveTranslations(fk.AsyncParallelBatchNode):
    """Reassembles each translated language and writes it atomically."""

    on_error = "collect"
    checkpoint = False

    async def prep_async(self, shared: dict[str, Any]) -> list[tuple[str, Path, str]]:
        doc: Document = shared["document"]
        return [
            (language, shared["paths"][language], doc.assemble(chunks))
            for language, chunks in shared["translated"].items()
        ]

    async def exec_async(self, item: tuple[str, Path, str]) -> Path:
        _, path, text = item
        return await write_text_atomic(path, text)

    async def post_async(
        self, shared: dict[str, Any], items: list[tuple[str, Path, str]], results: list[Any]
    ) -> None:
        saved: dict[str, Path] = {}
        failed: dict[str, str] = dict(shared["failed"])
        for (language, _, _), result in zip(items, results, strict=True):
            if isinstance(result, fk.ErrorRecord):
                failed[language] = f"{result.error_type}: {result.message}"
            else:
                saved[language] = result
        shared["result"] = TranslationResult(
            saved=saved, failed=failed, chunks=len(shared["document"].chunks)
        )


def translation_flow(settings: LLMSettings | None = None, *, max_chars: int = 2000) -> fk.AsyncFlow:
    """The flow; its shared store needs ``source``, ``languages`` and ``output`` and ends
    with ``result`` (a TranslationResult). Settings are checked here, before any work."""
    prepare = Prepare(max_chars=max_chars)
    prepare >> TranslateChunks(settings=settings) >> SaveTranslations()
    return fk.AsyncFlow(start=prepare, name="translation")


def translate_document(
    source: str | Path,
    languages: Iterable[str],
    output: str | Path,
    *,
    settings: LLMSettings | None = None,
    runner: fk.Runner | None = None,
    max_chars: int = 2000,
) -> TranslationResult:
    """Translate the markdown file ``source`` into each language, saving the translations
    under ``output``; runs under ``runner`` (default: at most 8 LLM calls at once)."""
    settings = settings if settings is not None else LLMSettings()
    flow = translation_flow(settings, max_chars=max_chars)
    shared: dict[str, Any] = {
        "source": Path(source),
        "languages": list(languages),
        "output": Path(output),
    }
    (runner or fk.Runner(limits={settings.limiter: DEFAULT_LIMIT})).run(flow, shared)
    result: TranslationResult = shared["result"]
    return result
