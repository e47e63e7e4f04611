from __future__ import annotations

import pytest

from flows.prompt_opt import role_settings
from flows.prompt_opt.nodes import RoleSettings
from nodes.llm import LLMSettings, Simulation


@pytest.fixture
def offline() -> RoleSettings:
    """Every role on the simulated provider, with no latency."""
    return role_settings(LLMSettings(provider="simulated", simulation=Simulation(latency_s=0)))
