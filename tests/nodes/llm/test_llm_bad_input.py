"""Settings that cannot work are refused when the node is built, before any call."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import flowkit as fk
from flowkit.errors import ConfigError
from nodes.llm import LLMClient, LLMConfigError, LLMNode, LLMSettings

NO_KEY = LLMSettings(provider="openai", api_key=None)


class Ask(LLMNode):
    async def exec_async(self, _: Any) -> str:
        return await self.llm.chat("hi")


def test_the_openai_provider_without_a_key_fails_when_the_node_is_built() -> None:
    with pytest.raises(LLMConfigError, match="needs an API key: set OPENAI_API_KEY"):
        Ask(settings=NO_KEY)
    assert issubclass(LLMConfigError, ConfigError)


def test_a_client_without_a_key_fails_when_created() -> None:
    with pytest.raises(LLMConfigError):
        LLMClient(NO_KEY)


def test_a_node_may_not_also_use_the_limiter_its_calls_take() -> None:
    with pytest.raises(LLMConfigError, match="remove 'llm' from uses"):
        Ask(settings=LLMSettings(provider="simulated"), uses=("llm",))


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="timeout"):
        LLMSettings(provider="simulated", timeout=0)
    with pytest.raises(ValueError, match="provider"):
        LLMSettings(provider="anthropic")  # type: ignore[arg-type]


def test_a_node_pickles_without_its_client() -> None:
    node = Ask(settings=LLMSettings(provider="simulated"))
    fk.Runner().run(node, {})
    assert node._llm is not None
    copy = pickle.loads(pickle.dumps(node))
    assert copy._llm is None and copy.settings == node.settings
