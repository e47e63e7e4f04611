"""Prompt optimisation as a flow: GEPA-style evolution of a system prompt, scored by simulated
conversations, every (prompt, dummy) conversation in parallel under one LLM budget.

From Python: ``optimize_prompt(output="out/")``; from a shell:
``flowkit run prompt-opt --output out/``. Offline by default (the simulated provider, with a
deterministic rule described in ``flows.prompt_opt.simulated``).
"""

from flows.prompt_opt.nodes import (
    AssistantTurn,
    ConversationNode,
    Judge,
    Reflect,
    UserTurn,
    prompt_opt_flow,
)
from flows.prompt_opt.outputs import CandidateRecord, PromptOptResult, UsageRow
from flows.prompt_opt.pareto import accept, pareto_front, select_parent
from flows.prompt_opt.prompts import Verdict
from flows.prompt_opt.run import llm_limits, optimize_prompt, role_settings
from flows.prompt_opt.scenario import (
    SEED_PROMPT,
    Dummy,
    PromptOptError,
    PromptOptInputError,
    Requirement,
    TooManyFailuresError,
    load_dummies,
    load_seed_prompts,
)
from flows.prompt_opt.state import PromptOptConfig

__all__ = [
    "SEED_PROMPT",
    "AssistantTurn",
    "CandidateRecord",
    "ConversationNode",
    "Dummy",
    "Judge",
    "PromptOptConfig",
    "PromptOptError",
    "PromptOptInputError",
    "PromptOptResult",
    "Reflect",
    "Requirement",
    "TooManyFailuresError",
    "UsageRow",
    "UserTurn",
    "Verdict",
    "accept",
    "llm_limits",
    "load_dummies",
    "load_seed_prompts",
    "optimize_prompt",
    "pareto_front",
    "prompt_opt_flow",
    "role_settings",
    "select_parent",
]
