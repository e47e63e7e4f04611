"""``flowkit run medmcqa``: the MedMCQA privacy experiment from a shell.

    flowkit run medmcqa --output out/                       # bundled sample, offline
    flowkit run medmcqa --output out/ --scenarios 1,2,4,3.0,3.2,3.3,3.4,3.5 --dp-variant strict
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
from flowkit.commands import (
    FlowCommand,
    UsageError,
    output_dir,
    positive_int,
    positive_number,
    text_file,
)
from flowkit.errors import MissingExtraError
from flowkit.node import BaseNode
from flowkit.results import RunInfo
from flows.medmcqa.data import DataError, QuestionFile, sample_path
from flows.medmcqa.experiment import (
    DEFAULT_EPSILONS,
    Experiment,
    ExperimentError,
    MechanismOptions,
    check_epsilons,
    check_scenarios,
)
from flows.medmcqa.flow import build_flow
from flows.medmcqa.privacy import VARIANTS, Embedder, MiniLMEmbedder
from flows.medmcqa.run import DEFAULT_LIMITS, corpus_counts, hashed_embedder, write_outputs
from flows.medmcqa.simulate import Role, SimulatedModels
from flows.medmcqa.table import DEFAULT_SCENARIOS, SCENARIOS, AccuracyTable
from nodes.llm import LLMConfigError, LLMSettings
from nodes.models import TextGenerator


class MedMCQACommand(FlowCommand):
    """Builds the experiment from command-line options and writes its outputs."""

    name = "medmcqa"
    description = (
        "MedMCQA privacy experiment: local/remote scenarios and text-DP sanitisers x ε, "
        "parallel under per-provider limits, with an accuracy table"
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
            metavar="DIR",
            help="results.jsonl, accuracy.csv/.md/.png (report: DIR/report); default: the "
            "run's folder, flowkit-out/medmcqa/RUN_ID",
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
            default=DEFAULT_SCENARIOS,
            metavar="S,S,...",
            help=f"default {','.join(DEFAULT_SCENARIOS)}; all: {','.join(SCENARIOS)}",
        )
        group.add_argument(
            "--dp-variant",
            choices=VARIANTS,
            default="reference",
            help="reference: each mechanism as its authors' code (default); strict: each "
            "spends exactly the ε it is given (see flows/medmcqa/README.md)",
        )
        defaults = MechanismOptions()
        group.add_argument(
            "--santext-p",
            type=float,
            default=defaults.santext_p,
            metavar="P",
            help=f"SANTEXT+: chance a non-sensitive word is replaced (default "
            f"{defaults.santext_p})",
        )
        group.add_argument(
            "--santext-w",
            type=float,
            default=defaults.santext_w,
            metavar="W",
            help=f"SANTEXT+: share of words, the rarest, that are sensitive (default "
            f"{defaults.santext_w})",
        )
        group.add_argument(
            "--custext-top-k",
            type=positive_int,
            default=defaults.custext_top_k,
            metavar="K",
            help=f"CusText+: words per cluster (default {defaults.custext_top_k})",
        )
        group.add_argument(
            "--clusant-clusters",
            type=positive_int,
            default=defaults.clusant_clusters,
            metavar="N",
            help=f"CluSanT: clusters (default {defaults.clusant_clusters})",
        )
        group.add_argument(
            "--clusant-k",
            type=positive_number,
            default=defaults.clusant_k,
            metavar="K",
            help=f"CluSanT: centroid scale (default {defaults.clusant_k:g})",
        )
        group.add_argument("--provider", choices=("simulated", "openai"), default="simulated")
        group.add_argument(
            "--embedder",
            choices=("hashed", "minilm"),
            help="default: minilm with --provider openai, else hashed",
        )
        group.add_argument(
            "--seed", type=int, default=0, help="the mechanisms' and the simulated models' draws"
        )
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
        if args.input is not None:
            text_file(args.input, "--input")
        try:
            questions = QuestionFile(
                args.input or sample_path(), cop_base=args.cop_base, limit=args.limit_items
            )
            questions.check()
            _check_usable(questions)
            options = MechanismOptions(
                santext_p=args.santext_p,
                santext_w=args.santext_w,
                custext_top_k=args.custext_top_k,
                clusant_clusters=args.clusant_clusters,
                clusant_k=args.clusant_k,
            )
            experiment = Experiment(
                _settings(args, "local"),
                _settings(args, "remote"),
                _embedder(args, questions),
                args.epsilons,
                args.scenarios,
                args.seed,
                simulator=SimulatedModels(seed=args.seed),
                local_generator=_generator(args.local_model_path),
                variant=args.dp_variant,
                options=options,
                corpus=corpus_counts(questions),
            )
        except (DataError, ExperimentError, LLMConfigError) as exc:
            raise UsageError(str(exc)) from None
        if args.output is None:
            args.output = args.out_dir
        args.out_dir = output_dir(args.output, "--output")
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
            f"{run_info.wall_time:.1f} s, DP variant {table.variant}; wrote "
            f"{args.output / 'results.jsonl'}, " + ", ".join(p.name for p in written)
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
    try:
        return hashed_embedder(questions)
    except ValueError as exc:  # no words at all: nothing to sanitise
        raise UsageError(
            f"--input: the questions in {questions.path} hold no words to build the offline "
            f"embedder from ({exc})"
        ) from None


MAX_EPSILON = 1e6
"""The largest privacy budget accepted: far beyond it every mechanism already keeps its
best-utility choice (no privacy at all), and larger values overflow the computation."""


def _epsilons(text: str) -> tuple[float, ...]:
    try:
        values = check_epsilons(float(part) for part in text.split(",") if part.strip())
    except (ValueError, ExperimentError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    too_big = [e for e in values if e > MAX_EPSILON]
    if too_big:
        raise argparse.ArgumentTypeError(
            f"ε values must be at most {MAX_EPSILON:g} (no privacy long before "
            f"that), got {', '.join(f'{e:g}' for e in too_big)}"
        )
    return values


def _check_usable(questions: QuestionFile) -> None:
    """Refuse a question file with no question the experiment can use, before any work."""
    if next(iter(questions), None) is not None:
        return
    problems = questions.problems
    if not problems:
        raise UsageError(f"--input: {questions.path} holds no questions (it is empty)")
    first = problems[0]
    raise UsageError(
        f"--input: {questions.path} has no usable question: {len(problems):,} record(s) "
        f"skipped, the first (line {first.line}) for {first.reason}"
    )


def _scenarios(text: str) -> tuple[str, ...]:
    try:
        return check_scenarios(text.split(","))
    except ExperimentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
