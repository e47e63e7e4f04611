"""``optimize_prompt``: the optimisation from Python, with its limits, settings and outputs.

Every LLM call draws on a named limiter, taken per call: by default one shared ``llm``
budget of 3 calls in flight (what the hand-written optimiser's semaphore allowed); a role
given its own limit draws on a limiter named after it instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flowkit as fk
from flows.prompt_opt.nodes import RoleSettings, prompt_opt_flow
from flows.prompt_opt.outputs import Prices, PromptOptResult, build_result, write_summary
from flows.prompt_opt.scenario import (
    SEED_PROMPT,
    Dummy,
    PromptOptInputError,
    check_unique,
    load_dummies,
)
from flows.prompt_opt.state import ROLES, PromptOptConfig, Role
from nodes.llm import DEFAULT_LIMITER, LLMSettings

DEFAULT_CONCURRENCY = 3
"""LLM calls in flight by default, across every role."""


def llm_limits(
    max_concurrency: int = DEFAULT_CONCURRENCY,
    rpm: float | None = None,
    role_limits: Mapping[Role, int] | None = None,
) -> dict[str, fk.Limit]:
    """Runner limits: the shared ``llm`` budget, plus one limiter per role given its own."""
    limits = {DEFAULT_LIMITER: fk.Limit(max_concurrency=max_concurrency, rpm=rpm)}
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


def check_inputs(
    dummies: Sequence[Dummy], settings: RoleSettings, limits: Mapping[str, object]
) -> None:
    """Refuse, before any call: no dummies, two with one id, dummies a simulated judge cannot
    score, and a role whose limiter the runner does not define (its calls would be unbounded)."""
    if not dummies:
        raise PromptOptInputError(
            "no dummies given: pass at least one, or None for the bundled set"
        )
    check_unique(dummies)
    judge = settings.get("judge")
    if judge is not None and judge.provider == "simulated":
        for dummy in dummies:
            dummy.check_simulable()
    for role, s in settings.items():
        if s.limiter not in limits:
            raise PromptOptInputError(
                f"the {role} role draws on limiter {s.limiter!r}, which the runner does not "
                f"define; add it to Runner(limits=...), e.g. llm_limits()"
            )


def optimize_prompt(
    dummies: Sequence[Dummy] | None = None,
    seed_prompts: Sequence[str] | None = None,
    *,
    config: PromptOptConfig | None = None,
    settings: RoleSettings | None = None,
    runner: fk.Runner | None = None,
    output: str | Path | None = None,
    prices: Prices | None = None,
    flow: fk.AsyncFlow | None = None,
) -> PromptOptResult:
    """Improve a system prompt on ``dummies`` (default: the bundled clinic set), starting
    from ``seed_prompts`` (default: the bundled seed prompt).

    ``settings`` maps roles to LLM settings (default: the environment's, for every role);
    ``runner`` defaults to one with ``llm_limits()`` (3 calls in flight) and, with
    ``output``, its run report in ``OUTPUT/report``. ``flow`` replaces the default
    ``prompt_opt_flow(settings)``, e.g. with another judge node. ``prices`` (dollars per
    million prompt and completion tokens, by role) prices the usage ledger.
    """
    dummies = list(dummies) if dummies is not None else load_dummies()
    seeds = list(seed_prompts) if seed_prompts is not None else [SEED_PROMPT]
    if not seeds or not all(s.strip() for s in seeds):
        raise PromptOptInputError("every seed prompt must hold some text")
    config = config if config is not None else PromptOptConfig()
    roles = {role: (settings or {}).get(role) or LLMSettings() for role in ROLES}
    if runner is None:
        report = None if output is None else Path(output) / "report"
        runner = fk.Runner(limits=llm_limits(), report=report)
    check_inputs(dummies, roles, runner.named_limits)
    config.check_budget(len(dummies), len(seeds))
    shared: dict[str, Any] = {"config": config, "dummies": dummies, "seeds": seeds}
    if output is not None:
        shared["output"] = Path(output)
    runner.run(flow or prompt_opt_flow(roles), shared)
    assert runner.last_run is not None
    result = build_result(
        shared["state"], runner.last_run, {r: s.model for r, s in roles.items()}, prices
    )
    if output is not None:
        write_summary(result, Path(output))
    return result
