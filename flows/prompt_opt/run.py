"""``optimize_prompt``: the optimisation from Python, with its data, limits, settings and outputs.

Every LLM call draws on a named limiter, taken per call: by default one shared ``llm``
budget of 3 calls in flight; a role given its own limit draws on a limiter named after it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flowkit as fk
from flowkit.errors import FlowkitWarning
from flows.prompt_opt.budget import StopSwitch
from flows.prompt_opt.config import PromptOptConfig
from flows.prompt_opt.conversation import ROLES, DummiesTask, Role, RoleSettings
from flows.prompt_opt.data import DEFAULT_SPLIT, Splits, make_splits
from flows.prompt_opt.events import Callback, Callbacks, LiveLog
from flows.prompt_opt.nodes import prompt_opt_flow
from flows.prompt_opt.outputs import PromptOptResult, build_result, write_summary
from flows.prompt_opt.scenario import SEED_PROMPT, PromptOptInputError, load_dummies
from flows.prompt_opt.search import Prices
from flows.prompt_opt.task import Task
from nodes.llm import DEFAULT_LIMITER, LLMSettings

DEFAULT_CONCURRENCY = 3
"""LLM calls in flight by default, across every role."""
SEED_COMPONENT = "system_prompt"
"""The component a seed prompt given as text becomes."""


class PromptOptWarning(FlowkitWarning):
    """Something about the data or options that weakens what the result means."""


def llm_limits(
    max_concurrency: int = DEFAULT_CONCURRENCY,
    rpm: float | None = None,
    role_limits: Mapping[Role, int] | None = None,
    tpm: float | None = None,
) -> dict[str, fk.Limit]:
    """Runner limits: the shared ``llm`` budget, plus one limiter per role given its own."""
    limits = {DEFAULT_LIMITER: fk.Limit(max_concurrency=max_concurrency, rpm=rpm, tpm=tpm)}
    for role, n in (role_limits or {}).items():
        limits[role] = fk.Limit(max_concurrency=n)
    return limits


def role_settings(
    base: LLMSettings | None = None,
    models: Mapping[Role, str] | None = None,
    role_limits: Mapping[Role, int] | None = None,
    base_urls: Mapping[Role, str] | None = None,
) -> dict[Role, LLMSettings]:
    """Settings per role from ``base``: each role's model and endpoint when given, and its
    own limiter when it has its own limit."""
    base = base if base is not None else LLMSettings()
    out: dict[Role, LLMSettings] = {}
    for role in ROLES:
        changes: dict[str, Any] = {}
        if models and role in models:
            changes["model"] = models[role]
        if base_urls and role in base_urls:
            changes["base_url"] = base_urls[role]
        if role_limits and role in role_limits:
            changes["limiter"] = role
        out[role] = base.model_copy(update=changes) if changes else base
    return out


def priced(settings: Mapping[Role, LLMSettings], prices: Prices | None) -> dict[Role, LLMSettings]:
    """Each role's settings with its price from ``prices`` (dollars per million prompt and
    completion tokens, by role), so its calls charge their cost to the run's budgets
    (``flowkit run --max-cost``) as the ledger counts it."""
    out = dict(settings)
    for role, found in settings.items():
        price = (prices or {}).get(role)
        if price is not None:
            priced = ((found.model, float(price[0]), float(price[1])),)
            out[role] = found.model_copy(update={"prices": priced})
    return out


def seed_candidates(
    seed_prompts: Sequence[str] | None = None, seeds: Sequence[Mapping[str, str]] | None = None
) -> list[dict[str, str]]:
    """The seed candidates: dicts of components as given, or each prompt text as a
    ``system_prompt`` component (default: the bundled seed prompt). All must share their
    component names, and every component must hold some text."""
    if seeds is not None and seed_prompts is not None:
        raise PromptOptInputError("give seed prompts or seed candidates, not both")
    out = (
        [dict(s) for s in seeds]
        if seeds is not None
        else [{SEED_COMPONENT: p} for p in (seed_prompts or [SEED_PROMPT])]
    )
    if not out:
        raise PromptOptInputError("give at least one seed prompt or candidate")
    names = list(out[0])
    for cand in out:
        if list(cand) != names:
            raise PromptOptInputError(
                f"every seed candidate needs the same components; {list(cand)} != {names}"
            )
        if not cand or not all(isinstance(t, str) and t.strip() for t in cand.values()):
            raise PromptOptInputError("every component of every seed must hold some text")
    return out


def check_inputs(
    task: Task, splits: Splits[Any], reflect: LLMSettings, limits: Mapping[str, object]
) -> None:
    """Refuse, before any call: rows the task cannot use, and a role whose limiter the
    runner does not define (its calls would be unbounded)."""
    task.check([*splits.train, *splits.val, *splits.test])
    for role, s in {**task.roles(), "reflect": reflect}.items():
        if s.limiter not in limits:
            raise PromptOptInputError(
                f"the {role} role draws on limiter {s.limiter!r}, which the runner does not "
                f"define; add it to Runner(limits=...), e.g. llm_limits()"
            )


def in_flight(task: Task, limits: Mapping[str, fk.Limit]) -> int | None:
    """The calls the task's evaluations may have in flight: its assistant's limiter's cap
    (or the shared ``llm`` one's)."""
    roles = task.roles()
    name = roles["assistant"].limiter if "assistant" in roles else DEFAULT_LIMITER
    limit = limits.get(name) or limits.get(DEFAULT_LIMITER)
    if limit is None:
        return None
    return limit.ceiling or (limit.max_concurrency if limit.max_concurrency != "auto" else None)


def optimize_prompt(
    dummies: Sequence[Any] | None = None,
    seed_prompts: Sequence[str] | None = None,
    *,
    train: Sequence[Any] | None = None,
    val: Sequence[Any] | None = None,
    test: Sequence[Any] | None = None,
    split: tuple[float, float, float] | None = DEFAULT_SPLIT,
    seeds: Sequence[Mapping[str, str]] | None = None,
    task: Task | None = None,
    config: PromptOptConfig | None = None,
    settings: RoleSettings | None = None,
    runner: fk.Runner | None = None,
    output: str | Path | None = None,
    prices: Prices | None = None,
    flow: fk.AsyncFlow | None = None,
    callbacks: Sequence[Callback] = (),
    stop: StopSwitch | None = None,
) -> PromptOptResult:
    """Improve a candidate (default: the bundled seed prompt) on a task (default: the
    dummies conversation with ``settings``, on the bundled clinic dummies).

    Rows: ``dummies`` (one set, for any task), split with the config's seed by ``split``
    (train, validation, test shares; None: validation is the whole set), or ``train``,
    ``val`` and ``test`` as given (no ``val``: validation is training, with a warning).
    Seeds: ``seed_prompts`` (texts, each a ``system_prompt`` component) or ``seeds`` (dicts
    of components). ``settings`` maps roles to LLM settings (the reflector's too); ``runner``
    defaults to one with ``llm_limits()`` and, with ``output``, its run report in
    ``OUTPUT/report``. ``prices`` (dollars per million prompt and completion tokens, by
    role) prices the ledger and feeds ``config.max_cost``. ``callbacks`` get every event;
    with ``output`` the events also go to ``OUTPUT/events.jsonl``. ``stop`` (a StopSwitch;
    default: the file ``OUTPUT/STOP``) and SIGUSR1 end the search after its round.
    """
    config = config if config is not None else PromptOptConfig()
    given = priced(settings or {}, prices)
    if task is None:
        task = DummiesTask(given, turns=config.turns)
        if dummies is None and train is None:
            dummies = load_dummies()
    splits = make_splits(
        dummies,
        train=train,
        val=val,
        test=test,
        split=split,
        seed=config.seed,
        row_id=task.row_id,
        noun=task.noun,
    )
    for warning in splits.warnings:
        warnings.warn(warning, PromptOptWarning, stacklevel=2)
    candidates = seed_candidates(seed_prompts, seeds)
    reflect = given.get("reflect") or LLMSettings()
    if runner is None:
        report = None if output is None else Path(output) / "report"
        runner = fk.Runner(limits=llm_limits(), report=report)
    check_inputs(task, splits, reflect, runner.settings.named_limits)
    config.check_budget(len(splits.val), len(candidates), task.calls_per_evaluation())
    if stop is None:
        stop = StopSwitch(None if output is None else Path(output) / "STOP")
        stop.clear()
    log = LiveLog(Path(output) / "events.jsonl") if output is not None else None
    shared: dict[str, Any] = {
        "config": config,
        "task": task,
        "splits": splits,
        "seeds": candidates,
        "in_flight": in_flight(task, runner.settings.named_limits),
        "prices": dict(prices or {}),
        "callbacks": Callbacks([*callbacks, *([log] if log else [])]),
        "stop": stop,
    }
    if output is not None:
        shared["output"] = Path(output)
    try:
        with stop.on_signal():
            runner.run(flow or prompt_opt_flow(given, task=task), shared)
    finally:
        if log is not None:
            log.close()
    assert runner.last_run is not None
    models = {name: s.model for name, s in {**task.roles(), "reflect": reflect}.items()}
    result = build_result(shared["state"], runner.last_run, models, prices)
    if output is not None:
        write_summary(result, Path(output))
    return result
