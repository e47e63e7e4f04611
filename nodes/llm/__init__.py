"""LLM calls for flowkit nodes: one client on the official ``openai`` SDK, with the run's
limits, retries with backoff, usage accounting, structured output, and an offline
simulated provider for runs without an API key.
"""

from nodes.llm.client import LLMClient, Message, Prompt
from nodes.llm.errors import (
    LLMCallError,
    LLMConfigError,
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMRequestError,
    LLMServerError,
    LLMTimeoutError,
    MalformedReplyError,
    StructuredOutputError,
    TransientLLMError,
    TruncatedReplyError,
)
from nodes.llm.journal import CallJournal, journaled
from nodes.llm.meter import Bill, Bills, add_bills, metered
from nodes.llm.nodes import LLMNode, ParallelLLMNode
from nodes.llm.settings import DEFAULT_LIMITER, LLMSettings, Simulation
from nodes.llm.simulated import fake_translation

__all__ = [
    "DEFAULT_LIMITER",
    "Bill",
    "Bills",
    "CallJournal",
    "LLMCallError",
    "LLMClient",
    "LLMConfigError",
    "LLMConnectionError",
    "LLMError",
    "LLMNode",
    "LLMRateLimitError",
    "LLMRequestError",
    "LLMServerError",
    "LLMSettings",
    "LLMTimeoutError",
    "MalformedReplyError",
    "Message",
    "ParallelLLMNode",
    "Prompt",
    "Simulation",
    "StructuredOutputError",
    "TransientLLMError",
    "TruncatedReplyError",
    "add_bills",
    "fake_translation",
    "journaled",
    "metered",
]
