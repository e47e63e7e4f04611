"""Prompt optimisation as a flow: GEPA-style evolution of named text components, scored on a
pluggable task (by default conversations with simulated users), every evaluation in
parallel under one LLM budget.

From Python: ``optimize_prompt(output="out/")``; from a shell:
``flowkit run prompt-opt --output out/``. Offline by default (the simulated provider, with a
deterministic rule described in ``flows.prompt_opt.simulated``). gepa users can run gepa's
own engine on flowkit instead: ``flows.prompt_opt.gepa_adapter`` (the ``gepa`` extra).
"""

from flows.prompt_opt.budget import StopSwitch
from flows.prompt_opt.config import PromptOptConfig
from flows.prompt_opt.conversation import (
    ROLES,
    AssistantTurn,
    ConversationNode,
    DummiesTask,
    Judge,
    Role,
    RoleSettings,
    UserTurn,
)
from flows.prompt_opt.data import Splits, make_splits
from flows.prompt_opt.dataset import DatasetRow, DatasetTask, load_dataset
from flows.prompt_opt.events import (
    BestChanged,
    CandidateAccepted,
    CandidateProposed,
    CandidateRejected,
    LiveLog,
    OptEvent,
    OptimisationEnded,
    RoundEnded,
)
from flows.prompt_opt.nodes import Reflect, prompt_opt_flow
from flows.prompt_opt.outputs import CandidateRecord, PromptOptResult, UsageRow
from flows.prompt_opt.pareto import accept, pareto_front, select_parent
from flows.prompt_opt.prompts import Verdict
from flows.prompt_opt.run import (
    PromptOptWarning,
    llm_limits,
    optimize_prompt,
    role_settings,
    seed_candidates,
)
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
from flows.prompt_opt.task import FunctionTask, Scored, Task, render

__all__ = [
    "ROLES",
    "SEED_PROMPT",
    "AssistantTurn",
    "BestChanged",
    "CandidateAccepted",
    "CandidateProposed",
    "CandidateRecord",
    "CandidateRejected",
    "ConversationNode",
    "DatasetRow",
    "DatasetTask",
    "DummiesTask",
    "Dummy",
    "FunctionTask",
    "Judge",
    "LiveLog",
    "OptEvent",
    "OptimisationEnded",
    "PromptOptConfig",
    "PromptOptError",
    "PromptOptInputError",
    "PromptOptResult",
    "PromptOptWarning",
    "Reflect",
    "Requirement",
    "Role",
    "RoleSettings",
    "RoundEnded",
    "Scored",
    "Splits",
    "StopSwitch",
    "Task",
    "TooManyFailuresError",
    "UsageRow",
    "UserTurn",
    "Verdict",
    "accept",
    "llm_limits",
    "load_dataset",
    "load_dummies",
    "load_seed_prompts",
    "make_splits",
    "optimize_prompt",
    "pareto_front",
    "prompt_opt_flow",
    "render",
    "role_settings",
    "seed_candidates",
    "select_parent",
]
