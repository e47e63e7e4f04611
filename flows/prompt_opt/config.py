"""How an optimisation runs: ``PromptOptConfig``, its defaults and the plan printed at start.

The defaults follow gepa's loop (github gepa-ai/gepa, 0.1.4): a parent drawn from the
validation Pareto front, a minibatch of 3 training rows, parent and child run fresh on that
minibatch, the child kept only if its sum there is strictly higher, then scored fresh on the
whole validation set. flowkit departs from it in named options, each measured in
``benchmarks/prompt_opt.py``:

- ``proposals``: children per round, by default derived from the calls allowed in flight
  (limit // minibatch: 1 at 3 in flight, 5 at 16), all run at once; gepa makes one.
- ``sampler="unsolved"``: the minibatch skips training rows the parent already scored
  perfectly on (gepa's ``epoch`` sampler draws them and then skips the whole proposal when
  all three are perfect, after paying for their runs).
- ``merge="auto"``: gepa's component-wise crossover when a common ancestor allows it, else
  an LLM merge of up to ``merge_width`` Pareto-front members; both only after a round that
  found something (gepa: crossover only, off by default).
- ``rescore="auto"``: when repeated runs of one candidate on one row disagreed (a noisy
  judge), the finalists are scored again on validation before the best is named.
- ``show_rejected``: the reflector sees the rewrites of this parent already rejected.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.prompt_opt.scenario import PromptOptInputError

Mode = Literal["gepa", "generational"]
Sampler = Literal["unsolved", "epoch"]
MergeKind = Literal["auto", "llm", "crossover", "off"]


class PromptOptConfig(BaseModel):
    """Options of one optimisation.

    ``mode`` "gepa": each round draws parents from the validation Pareto front; every
    proposal runs its parent fresh on a minibatch of training rows, asks the reflector for a
    rewrite of one component, runs the child on the same rows, keeps it only when its sum
    there is strictly higher, and then scores it fresh on the whole validation set.
    "generational": each round's children are scored on the whole validation set at once and
    kept when their mean beats their parent's.

    ``budget`` caps the LLM requests billed (every try: retries, re-asks and failed tries
    count), ``max_cost`` the dollars (from the price table), ``max_time`` the seconds of
    wall time; a round runs only the proposals its worst case allows. ``generations`` caps
    the rounds (the seeds' being 1); ``patience`` stops after that many rounds without a
    better best.
    ``failures`` "zero": a failed evaluation scores 0; "require": a child's gate also needs
    every gate evaluation (its own and its parent's) scored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = "gepa"
    budget: int | None = Field(default=1000, ge=1)
    max_cost: float | None = Field(default=None, gt=0)
    max_time: float | None = Field(default=None, gt=0)
    generations: int | None = Field(default=None, ge=1)
    turns: int = Field(default=3, ge=1)
    minibatch: int = Field(default=3, ge=1)
    proposals: int | None = Field(
        default=None, ge=1, description="children per round; None: calls in flight // minibatch"
    )
    sampler: Sampler = "unsolved"
    skip_perfect: bool = Field(default=True, description="no rewrite of a perfect minibatch")
    repeats: int = Field(default=1, ge=1)
    merge: MergeKind = "auto"
    merges: int = Field(default=5, ge=0, description="merge attempts at most; 0: none")
    merge_width: int = Field(default=3, ge=2, description="front members one LLM merge combines")
    failures: Literal["zero", "require"] = "zero"
    rescore: Literal["auto", "always", "never"] = "auto"
    finalists: int = Field(default=3, ge=1)
    patience: int = Field(default=4, ge=1, description="rounds without a better best")
    max_consecutive_failures: int = Field(default=5, ge=1)
    feedback: bool = Field(default=True, description="show the judge's feedback to the reflector")
    show_rejected: bool = True
    seed: int = 0

    @model_validator(mode="after")
    def _bounded(self) -> PromptOptConfig:
        caps = (self.budget, self.generations, self.max_cost, self.max_time)
        if all(cap is None for cap in caps):
            raise ValueError("give a budget, max_cost, max_time or a number of generations")
        return self

    def proposals_for(self, in_flight: int | None) -> int:
        """Children per round: as given, else the calls allowed in flight over the calls a
        minibatch keeps in flight (at least 1)."""
        if self.proposals is not None:
            return self.proposals
        if in_flight is None:
            return 1
        return max(1, in_flight // (self.minibatch * self.repeats))

    def merging(self) -> bool:
        return self.merge != "off" and self.merges > 0

    def check_budget(self, val_rows: int, seeds: int, calls_per_eval: int) -> None:
        """Refuse a budget too small to score the seeds on validation."""
        need = seeds * val_rows * self.repeats * calls_per_eval
        if self.budget is not None and self.budget < need:
            raise PromptOptInputError(
                f"a budget of {self.budget} LLM calls is below the {need} that scoring "
                f"{seeds} seed candidate(s) on {val_rows} validation rows needs; raise the budget"
            )


def round_worst_case(
    config: PromptOptConfig, proposals: int, train: int, val: int, per_eval: int
) -> int:
    """LLM calls one round may bill at most without retries: every proposal's parent and
    child runs on the minibatch, the rewrite, and the child's validation runs."""
    runs = config.repeats * per_eval
    gate = min(config.minibatch, train) * runs
    if config.mode == "generational":
        return proposals * (gate + 1 + val * runs)
    return proposals * (2 * gate + 1 + val * runs)


def budget_plan(
    config: PromptOptConfig,
    *,
    train: int,
    val: int,
    test: int,
    seeds: int,
    per_eval: int,
    in_flight: int | None,
    what: str = "conversation",
) -> str:
    """In words: the proposals per round and why, what the seeds, each round and the end may
    cost, and how many rounds the budget allows at least."""
    proposals = config.proposals_for(in_flight)
    runs = config.repeats * per_eval
    seed_calls = seeds * val * runs
    round_calls = round_worst_case(config, proposals, train, val, per_eval)
    why = (
        "as given"
        if config.proposals is not None
        else f"= {in_flight} calls in flight // minibatch {config.minibatch}"
        if in_flight is not None
        else "no limit known"
    )
    gate = min(config.minibatch, train)
    lines = [
        f"one {what}: up to {per_eval} LLM calls",
        f"proposals per round: {proposals} ({why})",
        f"round 1 (the seeds): {seeds} x {val} validation rows x {config.repeats} repeat(s) = "
        f"{seed_calls} calls",
    ]
    if config.mode == "gepa":
        lines.append(
            f"each later round: per proposal, the parent and the child on a minibatch of {gate} "
            f"training rows ({2 * gate * runs} calls), 1 rewrite, and {val * runs} to score an "
            f"accepted child on validation: at most {round_calls} calls per round"
        )
    else:
        lines.append(
            f"each later round: per proposal, 1 rewrite and {val * runs} calls to score the "
            f"child on validation: at most {round_calls} calls per round"
        )
    if test:
        lines.append(f"at the end: the best and the seeds on {test} test rows, once")
    if config.budget is not None:
        rounds = (config.budget - seed_calls) // round_calls if round_calls else 0
        lines.append(
            f"budget {config.budget} calls billed (retries and re-asks count): at least "
            f"{max(rounds, 0)} full round(s); a round runs only as many proposals as its worst "
            "case allows"
        )
    if config.max_cost is not None:
        lines.append(f"cost cap ${config.max_cost:g} from the price table")
    if config.max_time is not None:
        lines.append(f"wall-time cap {config.max_time:g} s: no round starts after it")
    if config.generations is not None:
        lines.append(f"at most {config.generations} generations")
    lines.append(f"patience: stop after {config.patience} rounds without a better best")
    return "\n".join(lines)
