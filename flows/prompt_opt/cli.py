"""``flowkit run prompt-opt``: optimise a system prompt from a shell.

    flowkit run prompt-opt --output out/                  # offline, bundled clinic dummies
    flowkit run prompt-opt --provider openai --model judge=gpt-4o --budget 600 --output out/

Before the run it prints what the budget allows per round; after it, the best score, the
usage table per role and the concurrency the LLM limiter really reached. The run report
goes to ``OUTPUT/report`` unless ``--report`` says otherwise. Exit codes: 0 done, 1 the run
failed (e.g. too many conversations failed in a row: ``--resume RUN_ID`` continues), 2 bad
usage.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import flowkit as fk
from flowkit.commands import (
    FlowCommand,
    UsageError,
    non_negative_number,
    output_dir,
    positive_int,
    positive_number,
    text_file,
)
from flowkit.node import BaseNode
from flows.prompt_opt.nodes import prompt_opt_flow
from flows.prompt_opt.outputs import build_result, concurrency_lines, usage_table, write_summary
from flows.prompt_opt.run import DEFAULT_CONCURRENCY, check_inputs, llm_limits, role_settings
from flows.prompt_opt.scenario import PromptOptInputError, load_dummies, load_seed_prompts
from flows.prompt_opt.state import ROLES, PromptOptConfig, Role
from nodes.llm import LLMConfigError, LLMSettings, Simulation


class PromptOptCommand(FlowCommand):
    """Builds the prompt-optimisation flow from command-line options."""

    name = "prompt-opt"
    description = (
        "improve a system prompt GEPA-style, scored by simulated conversations run in parallel"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add = parser.add_argument
        add(
            "--output",
            type=Path,
            metavar="DIR",
            help="folder for the results (default: the run's folder, "
            "flowkit-out/prompt-opt/RUN_ID)",
        )
        add("--dummies", type=Path, metavar="FILE", help="simulated users, JSON (default: bundled)")
        add(
            "--seed-prompt",
            type=Path,
            metavar="FILE",
            help="prompt(s) to start from; '---' lines split several",
        )
        add("--mode", choices=("gepa", "generational"), default="gepa")
        add(
            "--budget",
            type=positive_int,
            metavar="N",
            help="LLM calls at most (default 1000; none when only --generations is given)",
        )
        add(
            "--generations",
            type=positive_int,
            metavar="N",
            help="rounds at most, the seeds' being 1",
        )
        add(
            "--turns",
            type=positive_int,
            default=3,
            metavar="K",
            help="turns per conversation (default 3)",
        )
        add(
            "--minibatch",
            type=positive_int,
            default=3,
            metavar="N",
            help="dummies a child is first tried on (default 3)",
        )
        add(
            "--proposals",
            type=positive_int,
            default=2,
            metavar="N",
            help="children per round (default 2)",
        )
        add(
            "--merges",
            type=int,
            default=4,
            metavar="N",
            help="merge attempts at most (default 4; 0: none)",
        )
        add(
            "--repeats",
            type=positive_int,
            default=1,
            metavar="N",
            help="conversations per prompt and dummy, averaged",
        )
        add(
            "--patience",
            type=positive_int,
            default=4,
            metavar="N",
            help="stop after N rounds without a child",
        )
        add(
            "--no-feedback",
            action="store_true",
            help="hide the judge's feedback from the reflector",
        )
        add("--seed", type=int, default=0, help="random seed for selection and minibatches")
        add(
            "--max-concurrency",
            type=positive_int,
            default=DEFAULT_CONCURRENCY,
            metavar="N",
            help=f"LLM calls in flight, all roles together (default {DEFAULT_CONCURRENCY})",
        )
        add(
            "--rpm",
            type=positive_number,
            metavar="N",
            help="LLM calls started per minute, all roles together",
        )
        add(
            "--role-limit",
            action="append",
            default=[],
            type=_role_value(positive_int),
            metavar="ROLE=N",
            help="give a role its own limit of N calls in flight instead",
        )
        add(
            "--provider",
            choices=("openai", "simulated"),
            help="default: openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else simulated",
        )
        add(
            "--model",
            action="append",
            default=[],
            type=_role_value(str, bare=True),
            metavar="ROLE=M|M",
            help="model for a role (assistant, user, judge, reflect) or, bare, for all",
        )
        add(
            "--base-url",
            action="append",
            default=[],
            type=_role_value(str, bare=True),
            metavar="ROLE=URL|URL",
            help="OpenAI-compatible endpoint for a role or, bare, for all (default: "
            "$OPENAI_BASE_URL)",
        )
        add("--max-attempts", type=positive_int, metavar="N", help="tries per LLM call (default 5)")
        add(
            "--sim-latency",
            type=non_negative_number,
            default=0.05,
            metavar="S",
            help="seconds per simulated call (default 0.05)",
        )
        add(
            "--price",
            action="append",
            default=[],
            type=_role_value(_prices),
            metavar="ROLE=IN,OUT",
            help="dollars per million prompt and completion tokens, for the ledger",
        )

    def build(self, args: argparse.Namespace) -> tuple[BaseNode, Any]:
        try:
            config = PromptOptConfig(
                mode=args.mode,
                budget=args.budget if args.budget or args.generations else 1000,
                generations=args.generations,
                turns=args.turns,
                minibatch=args.minibatch,
                proposals=args.proposals,
                merges=args.merges,
                repeats=args.repeats,
                patience=args.patience,
                feedback=not args.no_feedback,
                seed=args.seed,
            )
            for option, given in (("--dummies", args.dummies), ("--seed-prompt", args.seed_prompt)):
                if given is not None and given.is_file():
                    text_file(given, option)  # UTF-8 or a one-line usage error
            dummies = load_dummies(args.dummies)
            seeds = load_seed_prompts(args.seed_prompt)
            settings = role_settings(
                self._base(args),
                _per_role(args.model),
                dict(args.role_limit) or None,
                _per_role(args.base_url),
            )
            check_inputs(dummies, settings, self.limits(args))
            config.check_budget(len(dummies), len(seeds))
            flow = prompt_opt_flow(settings)
        except (ValidationError, PromptOptInputError, LLMConfigError) as exc:
            raise UsageError(str(exc)) from None
        args.settings = settings
        if args.output is None:
            args.output = args.out_dir
        args.out_dir = output_dir(args.output, "--output")
        if args.report is None:
            args.report = str(args.output / "report")
        print(
            f"prompt-opt: {len(dummies)} dummies, {len(seeds)} seed prompt(s), {config.mode} mode"
        )
        for line in config.budget_plan(len(dummies), len(seeds)).splitlines():
            print(f"  {line}")
        shared = {"config": config, "dummies": dummies, "seeds": seeds, "output": args.output}
        return flow, shared

    def graph(self) -> BaseNode:
        return prompt_opt_flow({role: LLMSettings(provider="simulated") for role in ROLES})

    def limits(self, args: argparse.Namespace) -> dict[str, fk.Limit]:
        return llm_limits(args.max_concurrency, args.rpm, dict(args.role_limit) or None)

    def finish(self, args: argparse.Namespace, shared: Any, run_info: fk.RunInfo) -> int:
        models = {role: s.model for role, s in args.settings.items()}
        result = build_result(shared["state"], run_info, models, dict(args.price))
        write_summary(result, args.output)
        print(
            f"best {result.best_id}: mean score {result.best_score:.3f} (seed "
            f"{result.seed_score:.3f}) after {result.rounds} rounds; {result.stop_reason}"
        )
        print(usage_table(result.usage))
        for line in concurrency_lines(result):
            print(line)
        print(
            f"wrote {len(shared['written']) + 2} files under {args.output}: best_prompt.txt, "
            "candidates.jsonl, transcripts/, progress.png, summary.md, usage.json"
        )
        return 0

    def _base(self, args: argparse.Namespace) -> LLMSettings:
        given: dict[str, Any] = {"provider": args.provider, "max_attempts": args.max_attempts}
        given["simulation"] = Simulation(latency_s=args.sim_latency)
        return LLMSettings(**{k: v for k, v in given.items() if v is not None})


def _per_role(given: list[tuple[Role | None, str]]) -> dict[Role, str]:
    """``ROLE=VALUE`` options by role; a bare value is for every role."""
    out: dict[Role, str] = {}
    for role, value in given:
        for each in ROLES if role is None else (role,):
            out[each] = value
    return out


def _role_value(parse: Any, *, bare: bool = False) -> Any:
    """An argparse type for ``ROLE=VALUE``; with ``bare``, a lone ``VALUE`` is for every role
    (role None)."""

    def convert(text: str) -> tuple[Role | None, Any]:
        role, eq, value = text.partition("=")
        if not eq:
            if not bare:
                raise argparse.ArgumentTypeError(f"expected ROLE=VALUE, got {text!r}")
            return None, parse(text)
        if role not in ROLES:
            raise argparse.ArgumentTypeError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        return role, parse(value)

    return convert


def _natural(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(text)


def _prices(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        prompt, completion = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected IN,OUT dollars per million tokens, got {text!r}"
        ) from None
    return prompt, completion
