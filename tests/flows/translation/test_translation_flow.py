"""The translation flow end to end: files on disk, order, failures, names, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flowkit.events import Event
from flows.translation import TranslationInputError, translate_document
from flows.translation.markdown import PLACEHOLDER
from nodes.llm import LLMConfigError, LLMSettings, Simulation, fake_translation
from nodes.llm.testing import LLMServer
from nodes.llm.testing.completions import last_user_text, message_text

DOCUMENT = """---
title: Guide
---

# Guide

Install with `pip install flowkit`. Read [the docs](https://example.com/docs).

```bash
flowkit run translation --input README.md
```
"""


def simulated(**simulation: Any) -> LLMSettings:
    return LLMSettings(
        provider="simulated", simulation=Simulation(**{"latency_s": 0, **simulation})
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "guide.md"
    path.write_text(DOCUMENT, encoding="utf-8")
    return path


def test_each_language_is_saved_with_its_protected_spans(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = translate_document(source, ["French", "German"], out, settings=simulated())
    assert result.failed == {}
    assert result.saved == {"French": out / "guide.French.md", "German": out / "guide.German.md"}
    french = (out / "guide.French.md").read_text(encoding="utf-8")
    assert french.startswith("---\ntitle: Guide\n---\n\n# [French] Guide\n")
    assert "[French] Install with `pip install flowkit`." in french
    assert "(https://example.com/docs)" in french
    assert "```bash\nflowkit run translation --input README.md\n```\n" in french
    assert "[German] Read" in (out / "guide.German.md").read_text(encoding="utf-8")


def test_chunks_finishing_out_of_order_are_reassembled_in_order(tmp_path: Path) -> None:
    paragraphs = [f"Paragraph {n} is here." for n in range(30)]
    source = tmp_path / "long.md"
    source.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    finished: list[int] = []

    def listen(event: Event) -> None:
        if event.kind == "call_end" and event.node == "TranslateChunks":
            finished.append(event.index)

    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=30)}, on_event=listen)
    settings = simulated(latency_s=0.001, latency_max_s=0.05, seed=5)
    result = translate_document(
        source, ["French"], tmp_path / "out", settings=settings, runner=runner, max_chars=10
    )
    assert result.chunks == 30
    assert finished != sorted(finished)  # the calls really did finish out of order
    expected = "\n\n".join(fake_translation(p, "French") for p in paragraphs) + "\n"
    assert result.saved["French"].read_text(encoding="utf-8") == expected


def failing_for(language: str) -> LLMServer:
    def responder(body: dict[str, Any]) -> str:
        if language in message_text(body["messages"][0]):
            raise RuntimeError(f"no {language} today")
        return last_user_text(body["messages"])  # an identity "translation"

    return LLMServer(responder=responder)


def test_a_failing_language_is_reported_and_the_others_saved(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with failing_for("Klingon") as server:
        settings = LLMSettings(
            provider="openai", base_url=server.base_url, api_key="t", max_attempts=2, backoff_s=0
        )
        result = translate_document(source, ["French", "Klingon", "German"], out, settings=settings)
    assert sorted(result.saved) == ["French", "German"]
    assert list(result.failed) == ["Klingon"]
    assert result.failed["Klingon"].startswith("LLMServerError: TranslateChunks: model ")
    assert "gave up after 2 attempts" in result.failed["Klingon"]
    assert sorted(p.name for p in out.iterdir()) == ["guide.French.md", "guide.German.md"]


def test_a_reply_that_loses_a_placeholder_is_asked_again(source: Path, tmp_path: Path) -> None:
    replies: list[str] = []

    def responder(body: dict[str, Any]) -> str:
        text = last_user_text(body["messages"])
        reply = fake_translation(text if replies else PLACEHOLDER.sub("", text), "French")
        replies.append(reply)
        return reply

    with LLMServer(responder=responder) as server:
        settings = LLMSettings(provider="openai", base_url=server.base_url, api_key="t")
        result = translate_document(source, ["French"], tmp_path / "out", settings=settings)
    assert len(replies) == 2
    assert "`pip install flowkit`" in result.saved["French"].read_text(encoding="utf-8")


def test_file_names_are_made_safe(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = translate_document(
        source, ["../../escape", "Norsk: bokmål"], out, settings=simulated()
    )
    names = {language: path.name for language, path in result.saved.items()}
    assert names == {
        "../../escape": "guide..._.._escape.md",
        "Norsk: bokmål": "guide.Norsk_ bokmål.md",
    }
    assert all(path.parent == out for path in result.saved.values())


def test_languages_that_would_share_a_file_are_refused(source: Path, tmp_path: Path) -> None:
    with pytest.raises(TranslationInputError, match="would both be saved as guide.a_b.md"):
        translate_document(source, ["a/b", "a_b"], tmp_path / "out", settings=simulated())


def test_bad_input_is_refused_before_any_work(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(TranslationInputError, match="no languages given"):
        translate_document(source, [" ", ""], out, settings=simulated())
    with pytest.raises(FileNotFoundError):
        translate_document(tmp_path / "missing.md", ["French"], out, settings=simulated())
    with pytest.raises(LLMConfigError):
        translate_document(
            source, ["French"], out, settings=LLMSettings(provider="openai", api_key=None)
        )
    assert not out.exists()


def test_a_resumed_run_translates_only_what_is_missing(source: Path, tmp_path: Path) -> None:
    store, out = tmp_path / "runs.db", tmp_path / "out"
    with LLMServer() as server:
        settings = LLMSettings(provider="openai", base_url=server.base_url, api_key="t")
        limits = {"llm": fk.Limit(max_concurrency=4)}
        translate_document(
            source, ["French"], out, settings=settings,
            runner=fk.Runner(limits=limits, store=store, run_id="first"),
        )  # fmt: skip
        result = translate_document(
            source, ["French", "German"], out, settings=settings,
            runner=fk.Runner(limits=limits, store=store, resume="first"),
        )  # fmt: skip
        systems = [message_text(r.body["messages"][0]) for r in server.stats.requests]
    assert sorted(result.saved) == ["French", "German"]
    assert ["French" in s for s in systems] == [True, False]  # French was asked once only
