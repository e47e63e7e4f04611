"""``flowkit run prompt-opt``: optimise a prompt from a shell.

    flowkit run prompt-opt --output out/                  # offline, bundled clinic dummies
    flowkit run prompt-opt --provider openai --model judge=gpt-4o --max-cost 2 \\
        --price assistant=0.15,0.6 --price user=0.15,0.6 --price judge=2.5,10 \\
        --price reflect=2.5,10 --output out/
    flowkit run prompt-opt --dataset qa.jsonl --metric contains --output out/

Before the run it prints the splits and the plan (proposals per round and why, what each
round may cost); during it, one line per accepted or rejected child and per round; after
it, the best candidate's validation and test scores, the ledger per role and the
concurrency the LLM limiter really reached. ``touch OUT/STOP`` or ``kill -USR1 PID`` ends
the search after its round. ``--max-cost USD`` (``flowkit run``'s budget, priced by
``--price``) is one cap for both: the search plans its rounds to stay within it, and the
runner stops admitting calls once it is spent (exit status 3; ``--resume RUN_ID`` with a
larger one goes on). Exit codes: 0 done, 1 the run failed (``--resume RUN_ID`` continues
it), 2 bad usage, 3 the budget was spent.
"""

from __future__ import annotations

import argparse
import json
import sys
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
from flows.prompt_opt.budget import StopSwitch
from flows.prompt_opt.config import PromptOptConfig, budget_plan
from flows.prompt_opt.conversation import ROLES, DummiesTask, Role
from flows.prompt_opt.data import make_splits, parse_split
from flows.prompt_opt.dataset import METRICS, DatasetTask, load_dataset
from flows.prompt_opt.events import Callbacks, LiveLog
from flows.prompt_opt.nodes import prompt_opt_flow
from flows.prompt_opt.outputs import build_result, concurrency_lines, usage_table, write_summary
from flows.prompt_opt.run import (
    DEFAULT_CONCURRENCY,
    check_inputs,
    in_flight,
    llm_limits,
    priced,
    role_settings,
    seed_candidates,
)
from flows.prompt_opt.scenario import PromptOptInputError, load_dummies, load_seed_prompts
from flows.prompt_opt.task import Task
from nodes.llm import LLMConfigError, LLMSettings, Simulation


class PromptOptCommand(FlowCommand):
    """Builds the prompt-optimisation flow from command-line options."""

    name = "prompt-opt"
    description = "improve a prompt GEPA-style, scored by conversations or a dataset, in parallel"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add = parser.add_argument
        add(
            "--output",
            type=Path,
            metavar="DIR",
            help="folder for the results (default: the run's folder, "
            "flowkit-out/prompt-opt/RUN_ID)",
        )
        data = parser.add_argument_group("data")
        data.add_argument(
            "--dummies", type=Path, metavar="FILE", help="simulated users, JSON (default: bundled)"
        )
        data.add_argument(
            "--dataset", type=Path, metavar="FILE", help="rows of input and answer, JSON lines"
        )
        data.add_argument(
            "--metric", choices=METRICS, help="how --dataset answers are scored (default exact)"
        )
        data.add_argument(
            "--train", type=Path, metavar="FILE", help="training rows (dummies or dataset)"
        )
        data.add_argument("--val", type=Path, metavar="FILE", help="validation rows")
        data.add_argument(
            "--test", type=Path, metavar="FILE", help="test rows, scored once at the end"
        )
        data.add_argument(
            "--split",
            default="0.5,0.5",
            metavar="TRAIN,VAL[,TEST]",
            help="shares to split one set into (default 0.5,0.5)",
        )
        data.add_argument(
            "--no-split", action="store_true", help="one set serves as training and validation"
        )
        seeds = parser.add_argument_group("seeds")
        seeds.add_argument(
            "--seed-prompt",
            type=Path,
            metavar="FILE",
            help="prompt(s) to start from; '---' lines split several",
        )
        seeds.add_argument(
            "--seed-candidate",
            type=Path,
            metavar="FILE",
            help="a JSON object of named components to start from (or a list of them)",
        )
        search = parser.add_argument_group("search")
        search.add_argument(
            "--mode",
            choices=("gepa", "generational"),
            default="gepa",
            help="gepa: children gated on a minibatch (default); generational: all scored",
        )
        search.add_argument(
            "--turns",
            type=positive_int,
            default=3,
            metavar="K",
            help="turns per conversation (default 3)",
        )
        search.add_argument(
            "--minibatch",
            type=positive_int,
            default=3,
            metavar="N",
            help="training rows per gate (default 3)",
        )
        search.add_argument(
            "--proposals",
            type=positive_int,
            metavar="N",
            help="children per round (default: calls in flight // minibatch)",
        )
        search.add_argument(
            "--sampler",
            choices=("unsolved", "epoch"),
            default="unsolved",
            help="unsolved: skip rows the parent already aces (default); epoch: gepa's",
        )
        search.add_argument(
            "--merge",
            choices=("auto", "llm", "crossover", "off"),
            default="auto",
            help="after a round that found something: gepa's crossover when it applies, "
            "else an LLM merge (auto)",
        )
        search.add_argument(
            "--merges", type=int, default=5, metavar="N", help="merge attempts at most (default 5)"
        )
        search.add_argument(
            "--failures",
            choices=("zero", "require"),
            default="zero",
            help="a failed evaluation scores 0 (default); require: a gate needs every run",
        )
        search.add_argument(
            "--rescore",
            choices=("auto", "always", "never"),
            default="auto",
            help="score the finalists again before naming the best (auto: when the judge "
            "proved noisy)",
        )
        search.add_argument(
            "--finalists", type=positive_int, default=3, metavar="N", help="re-scored at the end"
        )
        search.add_argument(
            "--repeats", type=positive_int, default=1, metavar="N", help="runs per row, averaged"
        )
        search.add_argument(
            "--patience",
            type=positive_int,
            default=4,
            metavar="N",
            help="rounds without a better best",
        )
        search.add_argument(
            "--no-feedback",
            action="store_true",
            help="hide the judge's feedback from the reflector",
        )
        search.add_argument(
            "--seed", type=int, default=0, help="random seed: split, selection, minibatches"
        )
        stop = parser.add_argument_group("budget and stopping")
        stop.add_argument(
            "--budget",
            type=positive_int,
            metavar="N",
            help="LLM requests billed at most, retries included (default 1000; none with only "
            "--generations, --max-cost or --max-time)",
        )
        stop.add_argument(
            "--max-time", type=positive_number, metavar="S", help="seconds: no round starts after"
        )
        stop.add_argument(
            "--generations",
            type=positive_int,
            metavar="N",
            help="rounds at most, the seeds' being 1",
        )
        stop.add_argument(
            "--stop-file",
            type=Path,
            metavar="PATH",
            help="stop after the round when it appears (default OUTPUT/STOP)",
        )
        llm = parser.add_argument_group("LLM")
        llm.add_argument(
            "--max-concurrency",
            type=positive_int,
            default=DEFAULT_CONCURRENCY,
            metavar="N",
            help=f"LLM calls in flight, all roles together (default {DEFAULT_CONCURRENCY})",
        )
        llm.add_argument(
            "--rpm", type=positive_number, metavar="N", help="LLM calls started per minute"
        )
        llm.add_argument("--tpm", type=positive_number, metavar="N", help="LLM tokens per minute")
        llm.add_argument(
            "--role-limit",
            action="append",
            default=[],
            type=_role_value(positive_int),
            metavar="ROLE=N",
            help="give a role its own limit of N calls in flight instead",
        )
        llm.add_argument(
            "--provider",
            choices=("openai", "simulated"),
            help="default: openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else simulated",
        )
        llm.add_argument(
            "--model",
            action="append",
            default=[],
            type=_role_value(str, bare=True),
            metavar="ROLE=M|M",
            help="model for a role (assistant, user, judge, reflect) or, bare, for all",
        )
        llm.add_argument(
            "--base-url",
            action="append",
            default=[],
            type=_role_value(str, bare=True),
            metavar="ROLE=URL|URL",
            help="OpenAI-compatible endpoint for a role or, bare, for all",
        )
        llm.add_argument(
            "--max-attempts", type=positive_int, metavar="N", help="tries per LLM call (default 5)"
        )
        llm.add_argument(
            "--sim-latency",
            type=non_negative_number,
            default=0.05,
            metavar="S",
            help="seconds per simulated call (default 0.05)",
        )
        llm.add_argument(
            "--price",
            action="append",
            default=[],
            type=_role_value(_prices),
            metavar="ROLE=IN,OUT",
            help="dollars per million prompt and completion tokens, for the ledger and --max-cost",
        )

    def build(self, args: argparse.Namespace) -> tuple[BaseNode, Any]:
        try:
            limited = args.budget or args.generations or args.max_cost or args.max_time
            config = PromptOptConfig(
                mode=args.mode,
                budget=args.budget if limited else 1000,
                max_cost=args.max_cost,
                max_time=args.max_time,
                generations=args.generations,
                turns=args.turns,
                minibatch=args.minibatch,
                proposals=args.proposals,
                sampler=args.sampler,
                merge=args.merge,
                merges=args.merges,
                failures=args.failures,
                rescore=args.rescore,
                finalists=args.finalists,
                repeats=args.repeats,
                patience=args.patience,
                feedback=not args.no_feedback,
                seed=args.seed,
            )
            for option, given in (
                ("--dummies", args.dummies),
                ("--seed-prompt", args.seed_prompt),
                ("--dataset", args.dataset),
                ("--train", args.train),
                ("--val", args.val),
                ("--test", args.test),
            ):
                if given is not None and given.is_file():
                    text_file(given, option)  # UTF-8 or a one-line usage error
            prices = dict(args.price)
            settings = priced(
                role_settings(
                    self._base(args),
                    _per_role(args.model),
                    dict(args.role_limit) or None,
                    _per_role(args.base_url),
                ),
                prices,
            )
            task, splits = self._data(args, settings, config)
            candidates = self._seeds(args)
            limits = self.limits(args)
            check_inputs(task, splits, settings["reflect"], limits)
            config.check_budget(len(splits.val), len(candidates), task.calls_per_evaluation())
            if config.max_cost is not None and not prices:
                raise PromptOptInputError("--max-cost needs prices: give --price ROLE=IN,OUT")
            flow = prompt_opt_flow(settings, task=task)
        except (ValidationError, PromptOptInputError, LLMConfigError) as exc:
            raise UsageError(str(exc)) from None
        args.settings, args.task = settings, task
        if args.output is None:
            args.output = args.out_dir
        args.out_dir = output_dir(args.output, "--output")
        if args.report is None:
            args.report = str(args.output / "report")
        stop = StopSwitch(args.stop_file or args.output / "STOP")
        if stop.clear():
            print(f"prompt-opt: removed the stop file {stop.stop_file} left by an earlier run")
        args.undo_signal = stop.install()
        args.log = LiveLog(args.output / "events.jsonl", sys.stdout)
        flying = in_flight(task, limits)
        print(f"prompt-opt: {task.noun}: {splits.how}")
        for warning in splits.warnings:
            print(f"prompt-opt: warning: {warning}")
        unpriced = sorted({*task.roles(), "reflect"} - set(prices)) if prices else []
        if config.max_cost is not None and unpriced:
            print(f"prompt-opt: warning: no --price for {', '.join(unpriced)}: counted as free")
        print(f"prompt-opt: {len(candidates)} seed candidate(s), {config.mode} mode")
        plan = budget_plan(
            config,
            train=len(splits.train),
            val=len(splits.val),
            test=len(splits.test),
            seeds=len(candidates),
            per_eval=task.calls_per_evaluation(),
            in_flight=flying,
            what=task.unit,
        )
        for line in plan.splitlines():
            print(f"  {line}")
        shared = {
            "config": config,
            "task": task,
            "splits": splits,
            "seeds": candidates,
            "in_flight": flying,
            "prices": prices,
            "callbacks": Callbacks([args.log]),
            "stop": stop,
            "output": args.output,
        }
        return flow, shared

    def _data(
        self, args: argparse.Namespace, settings: Any, config: PromptOptConfig
    ) -> tuple[Task, Any]:
        task: Task
        if args.dataset is not None or args.metric is not None:
            if args.dummies is not None:
                raise PromptOptInputError("give --dummies or --dataset, not both")
            task = DatasetTask(args.metric or "exact", settings)
            load: Any = load_dataset
            one = args.dataset
        else:
            task = DummiesTask(settings, turns=config.turns)
            load = load_dummies
            one = args.dummies
        if args.train is not None:
            if one is not None:
                flag = "--dataset" if args.dataset else "--dummies"
                raise PromptOptInputError(f"give one set ({flag}) or --train, not both")
            splits = make_splits(
                train=load(args.train),
                val=load(args.val) if args.val else None,
                test=load(args.test) if args.test else None,
                seed=config.seed,
                row_id=task.row_id,
                noun=task.noun,
            )
            return task, splits
        if args.val is not None:
            raise PromptOptInputError("--val needs --train")
        if one is None and isinstance(task, DatasetTask):
            raise PromptOptInputError("--metric needs --dataset FILE (or --train FILE)")
        rows = load(one) if one is not None else load()
        return task, make_splits(
            rows,
            test=load(args.test) if args.test else None,
            split=None if args.no_split else parse_split(args.split),
            seed=config.seed,
            row_id=task.row_id,
            noun=task.noun,
        )

    def _seeds(self, args: argparse.Namespace) -> list[dict[str, str]]:
        if args.seed_candidate is not None:
            if args.seed_prompt is not None:
                raise PromptOptInputError("give --seed-prompt or --seed-candidate, not both")
            try:
                data = json.loads(args.seed_candidate.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise PromptOptInputError(f"cannot read {args.seed_candidate}: {exc}") from None
            items = data if isinstance(data, list) else [data]
            if not all(isinstance(i, dict) for i in items):
                raise PromptOptInputError(
                    f"{args.seed_candidate}: expected an object of components"
                )
            return seed_candidates(seeds=items)
        prompts = load_seed_prompts(args.seed_prompt) if args.seed_prompt else None
        return seed_candidates(prompts)

    def graph(self) -> BaseNode:
        return prompt_opt_flow({role: LLMSettings(provider="simulated") for role in ROLES})

    def limits(self, args: argparse.Namespace) -> dict[str, fk.Limit]:
        return llm_limits(args.max_concurrency, args.rpm, dict(args.role_limit) or None, args.tpm)

    def finish(self, args: argparse.Namespace, shared: Any, run_info: fk.RunInfo) -> int:
        args.undo_signal()
        args.log.close()
        models = {
            name: s.model
            for name, s in {**args.task.roles(), "reflect": args.settings["reflect"]}.items()
        }
        result = build_result(shared["state"], run_info, models, dict(args.price))
        write_summary(result, args.output)
        test = (
            ""
            if result.test_score is None
            else f"; test {result.test_score:.3f} (seed {result.seed_test_score or 0.0:.3f})"
        )
        print(
            f"best {result.best_id}: validation {result.best_score:.3f} (seed "
            f"{result.seed_score:.3f}){test} after {result.rounds} rounds; {result.stop_reason}"
        )
        failures = sum(c.failures for c in result.candidates)
        if failures:
            print(f"{failures} evaluation(s) failed and scored 0; see candidates.jsonl")
        print(usage_table(result.usage))
        for line in concurrency_lines(result):
            print(line)
        print(
            f"wrote {len(shared['written']) + 3} files under {args.output}: best_prompt.txt, "
            "best_candidate.json, candidates.jsonl, evaluations.jsonl, events.jsonl, "
            "transcripts/, progress.png, summary.md, usage.json"
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


def _prices(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        prompt, completion = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected IN,OUT dollars per million tokens, got {text!r}"
        ) from None
    return prompt, completion
