"""``flowkit run medmcqa``: the MedMCQA privacy experiment from a shell.

    flowkit run medmcqa --output out/                       # bundled sample, offline
    flowkit run medmcqa --input dev.json --cop-base 0 --provider openai \\
        --local-base-url http://localhost:8000/v1 --local-model llama-3.1-8b \\
        --remote-model deepseek-chat --remote-base-url https://api.deepseek.com/v1 \\
        --remote-max-concurrency 16 --output out/

Keys come from ``FLOWKIT_LOCAL_API_KEY`` and ``FLOWKIT_REMOTE_API_KEY`` (else
``OPENAI_API_KEY``). Exit codes: 0 every cell answered, 1 some cells failed (they are in
the table and ``results.jsonl``; ``--resume RUN_ID`` reruns them), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import flowkit as fk
from flowkit.commands import FlowCommand, UsageError, positive_int, positive_number
from flowkit.errors import MissingExtraError
from flowkit.node import BaseNode
from flowkit.runner import RunInfo
from flows.medmcqa.data import DataError, QuestionFile, sample_path
from flows.medmcqa.flow import (
    DEFAULT_EPSILONS,
    Experiment,
    ExperimentError,
    build_flow,
    check_epsilons,
    check_scenarios,
)
from flows.medmcqa.privacy import Embedder, MiniLMEmbedder
from flows.medmcqa.run import DEFAULT_LIMITS, hashed_embedder, write_outputs
from flows.medmcqa.simulate import Role
from flows.medmcqa.table import SCENARIOS, AccuracyTable
from nodes.llm import LLMConfigError, LLMSettings
from nodes.models import TextGenerator


class MedMCQACommand(FlowCommand):
    """Builds the experiment from command-line options and writes its outputs."""

    name = "medmcqa"
    description = (
        "MedMCQA privacy experiment: local/remote scenarios and three text-DP sanitisers "
        "x ε, parallel under per-provider limits, with an accuracy table"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("medmcqa (a bare --limit N runs the first N questions)")
        group.add_argument(
            "--input",
            type=Path,
            metavar="FILE",
            help="MedMCQA JSON Lines or JSON array (default: the bundled 64-question sample)",
        )
        group.add_argument(
            "--cop-base",
            type=int,
            choices=(0, 1),
            default=1,
            help="1: original release (default); 0: the hub's copy",
        )
        group.add_argument(
            "--output",
            type=Path,
            required=True,
            metavar="DIR",
            help="results.jsonl, accuracy.csv/.md/.png (report: DIR/report)",
        )
        group.add_argument(
            "--epsilons",
            type=_epsilons,
            default=DEFAULT_EPSILONS,
            metavar="E,E,...",
            help="privacy budgets (default 1,2,3)",
        )
        group.add_argument(
            "--scenarios",
            type=_scenarios,
            default=SCENARIOS,
            metavar="S,S,...",
            help=f"default: all of {','.join(SCENARIOS)}",
        )
        group.add_argument("--provider", choices=("simulated", "openai"), default="simulated")
        group.add_argument(
            "--embedder",
            choices=("hashed", "minilm"),
            help="default: minilm with --provider openai, else hashed",
        )
        group.add_argument("--seed", type=int, default=0, help="mechanisms' and simulation's")
        group.add_argument(
            "--question-concurrency",
            type=positive_int,
            default=64,
            metavar="N",
            help="questions in flight (default 64)",
        )
        for role in ("local", "remote"):
            limit = DEFAULT_LIMITS[role].max_concurrency
            group.add_argument(f"--{role}-model", metavar="M", help=f"the {role} model's name")
            group.add_argument(
                f"--{role}-base-url", metavar="URL", help=f"the {role} OpenAI-compatible endpoint"
            )
            group.add_argument(
                f"--{role}-max-concurrency",
                type=positive_int,
                default=limit,
                metavar="N",
                help=f"{role} calls in flight (default {limit})",
            )
            group.add_argument(
                f"--{role}-rpm",
                type=positive_number,
                metavar="N",
                help=f"{role} calls per minute (default: --rpm)",
            )
            group.add_argument(
                f"--{role}-tpm", type=positive_number, metavar="N", help=f"{role} tokens per minute"
            )
        group.add_argument(
            "--local-model-path",
            type=Path,
            metavar="DIR",
            help="answer the local side with this Hugging Face model (nodes.models, the ml "
            "extra) instead of an endpoint",
        )
        group.add_argument(
            "--rpm", type=positive_number, metavar="N", help="calls per minute, each side"
        )

    def build(self, args: argparse.Namespace) -> tuple[BaseNode, Any]:
        try:
            questions = QuestionFile(
                args.input or sample_path(), cop_base=args.cop_base, limit=args.limit_items
            )
            questions.check()
            experiment = Experiment(
                _settings(args, "local"),
                _settings(args, "remote"),
                _embedder(args, questions),
                args.epsilons,
                args.scenarios,
                args.seed,
                local_generator=_generator(args.local_model_path),
            )
        except (DataError, ExperimentError, LLMConfigError) as exc:
            raise UsageError(str(exc)) from None
        if args.report is None:
            args.report = str(args.output / "report")
        flow = build_flow(experiment, question_concurrency=args.question_concurrency)
        shared = {"questions": questions, "output": args.output}
        if not args.no_progress:
            shared["progress_every"] = 5.0
        return flow, shared

    def graph(self) -> BaseNode:
        questions = QuestionFile(sample_path(), limit=1)
        local = LLMSettings(provider="simulated", limiter="local")
        remote = LLMSettings(provider="simulated", limiter="remote")
        return build_flow(Experiment(local, remote, hashed_embedder(questions)))

    def limits(self, args: argparse.Namespace) -> dict[str, fk.Limit]:
        return {
            role: fk.Limit(
                max_concurrency=getattr(args, f"{role}_max_concurrency"),
                rpm=getattr(args, f"{role}_rpm") or args.rpm,
                tpm=getattr(args, f"{role}_tpm"),
            )
            for role in ("local", "remote")
        }

    def finish(self, args: argparse.Namespace, shared: Any, run_info: RunInfo) -> int:
        table: AccuracyTable = shared["table"]
        for problem in shared["questions"].problems:
            print(
                f"skipped line {problem.line}{f' (id {problem.id})' if problem.id else ''}: "
                f"{problem.reason}",
                file=sys.stderr,
            )
        try:
            written = write_outputs(table, args.output)
        except MissingExtraError as exc:  # no matplotlib: keep the tables, say why
            written = write_outputs(table, args.output, plot=False)
            print(f"accuracy.png not written: {exc}", file=sys.stderr)
        sink = shared["sink"]
        print(table.to_markdown(), end="")
        print(
            f"{sink.questions} questions, {sink.cells} cells ({table.failed} failed) in "
            f"{run_info.wall_time:.1f} s; wrote {args.output / 'results.jsonl'}, "
            + ", ".join(p.name for p in written)
        )
        if table.failed:
            print(
                f"{table.failed} cells failed; rerun them with --resume {run_info.run_id}",
                file=sys.stderr,
            )
        return 1 if table.failed else 0


def _settings(args: argparse.Namespace, role: Role) -> LLMSettings:
    given: dict[str, Any] = {
        "provider": args.provider,
        "limiter": role,
        "model": getattr(args, f"{role}_model") or f"{role}-sim",
    }
    base_url = getattr(args, f"{role}_base_url")
    if base_url:
        given["base_url"] = base_url
    key = os.environ.get(f"FLOWKIT_{role.upper()}_API_KEY")
    if key:
        given["api_key"] = key
    if args.provider == "openai" and not getattr(args, f"{role}_model"):
        raise UsageError(f"--provider openai needs --{role}-model")
    return LLMSettings(**given)


def _generator(path: Path | None) -> TextGenerator | None:
    if path is None:
        return None
    if not path.is_dir():
        raise UsageError(f"--local-model-path: no model directory {path}")
    try:
        return TextGenerator(str(path), max_new_tokens=256)
    except fk.FlowkitError as exc:
        raise UsageError(str(exc)) from None


def _embedder(args: argparse.Namespace, questions: QuestionFile) -> Embedder:
    kind = args.embedder or ("minilm" if args.provider == "openai" else "hashed")
    if kind == "minilm":
        try:
            return MiniLMEmbedder()
        except fk.FlowkitError as exc:
            raise UsageError(f"{exc}; or pass --embedder hashed") from None
    return hashed_embedder(questions)


def _epsilons(text: str) -> tuple[float, ...]:
    try:
        return check_epsilons(float(part) for part in text.split(",") if part.strip())
    except (ValueError, ExperimentError) as exc:
        raise argparse.ArgumentTypeError(f"--epsilons: {exc}") from None


def _scenarios(text: str) -> tuple[str, ...]:
    try:
        return check_scenarios(text.split(","))
    except ExperimentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


