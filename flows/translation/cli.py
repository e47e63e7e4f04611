"""``flowkit run translation``: translate a markdown file into many languages from a shell.

    flowkit run translation --input README.md --languages French,German --output out/

Exit codes: 0 every language saved, 1 some language failed (the others are saved),
2 bad usage (no languages, a missing input file, the OpenAI provider without a key).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import flowkit as fk
from flowkit.commands import (
    FlowCommand,
    UsageError,
    output_dir,
    positive_int,
    positive_number,
    text_file,
)
from flowkit.node import BaseNode
from flowkit.redact import redact
from flows.translation.flow import (
    DEFAULT_LIMIT,
    TranslationInputError,
    TranslationResult,
    check_languages,
    translation_flow,
)
from nodes.llm import DEFAULT_LIMITER, LLMConfigError, LLMSettings


class TranslationCommand(FlowCommand):
    """Builds the translation flow from command-line options."""

    name = "translation"
    description = "translate a markdown document into many languages in parallel"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--input",
            required=True,
            type=_existing_file,
            metavar="FILE",
            help="markdown to translate (UTF-8)",
        )
        parser.add_argument(
            "--languages",
            required=True,
            type=_languages,
            metavar="LANG,LANG,...",
            help="comma-separated, e.g. French,German,Japanese",
        )
        parser.add_argument(
            "--output",
            type=Path,
            metavar="DIR",
            help="folder for FILE.LANG.md (default: the run's folder, "
            "flowkit-out/translation/RUN_ID)",
        )
        parser.add_argument(
            "--provider",
            choices=("openai", "simulated"),
            help="default: openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else simulated",
        )
        parser.add_argument(
            "--model", help="model name (default: $FLOWKIT_LLM_MODEL or gpt-4o-mini)"
        )
        parser.add_argument(
            "--max-concurrency",
            type=positive_int,
            default=DEFAULT_LIMIT.max_concurrency,
            metavar="N",
            help=f"LLM calls in flight (default {DEFAULT_LIMIT.max_concurrency})",
        )
        parser.add_argument(
            "--rpm", type=positive_number, metavar="N", help="LLM calls started per minute"
        )
        parser.add_argument(
            "--max-attempts",
            type=positive_int,
            metavar="N",
            help="tries per LLM call on 429, 5xx, timeouts and connection errors (default 5)",
        )

    def build(self, args: argparse.Namespace) -> tuple[BaseNode, Any]:
        text_file(args.input, "--input")  # UTF-8, or one line saying so
        given = {"provider": args.provider, "model": args.model, "max_attempts": args.max_attempts}
        try:
            settings = LLMSettings(**{k: v for k, v in given.items() if v is not None})
            flow = translation_flow(settings)
        except LLMConfigError as exc:
            raise UsageError(str(exc)) from None
        if args.output is None:
            args.output = args.out_dir
        output_dir(args.output, "--output")
        if args.report is None:  # the report goes to the run's own folder
            args.report = str(output_dir(args.out_dir, "--report") / "report")
        args.out_dir = args.output
        shared = {"source": args.input, "languages": args.languages, "output": args.output}
        return flow, shared

    def graph(self) -> BaseNode:
        return translation_flow(LLMSettings(provider="simulated"))

    def limits(self, args: argparse.Namespace) -> dict[str, fk.Limit]:
        limit = fk.Limit(max_concurrency=args.max_concurrency, rpm=args.rpm)
        return {DEFAULT_LIMITER: limit}

    def finish(self, args: argparse.Namespace, shared: Any, run_info: fk.RunInfo) -> int:
        result: TranslationResult = shared["result"]
        for language, path in result.saved.items():
            print(f"saved {language}: {path}")
        for language, why in result.failed.items():
            print(redact(f"failed {language}: {why}"), file=sys.stderr)
        return 1 if result.failed else 0


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def _languages(text: str) -> list[str]:
    try:
        return check_languages(text.split(","))
    except TranslationInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
