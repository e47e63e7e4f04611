"""Node bases whose exec calls an LLM: ``await self.llm.chat(...)``.

Settings come from the ``settings`` keyword, else a ``settings`` class attribute, else the
environment, and are checked when the node is built, so a missing API key stops a flow
before any work starts. Combine ``LLMNode`` with other node classes for other batch shapes,
e.g. ``class Summarise(LLMNode, flowkit.AsyncBatchNode)`` for one call at a time.
"""

from __future__ import annotations

from typing import Any

import flowkit as fk
from nodes.llm.client import LLMClient
from nodes.llm.errors import LLMConfigError
from nodes.llm.settings import LLMSettings


class LLMNode(fk.AsyncNode):
    """An async node with an LLM client at ``self.llm``, built lazily and never pickled.

    Calls draw on the runner's limiter named ``settings.limiter`` by themselves; do not list
    it in ``uses`` as well (each call would then hold two of its slots).
    """

    settings: LLMSettings | None = None

    def __init__(self, *, settings: LLMSettings | None = None, **options: Any) -> None:
        super().__init__(**options)
        resolved = settings or type(self).settings or LLMSettings()
        resolved.check()
        if resolved.limiter in self.uses:
            raise LLMConfigError(
                f"{self.name}: remove {resolved.limiter!r} from uses; the node's LLM calls "
                "already take that limiter, once per call"
            )
        self.settings = resolved
        self._llm: LLMClient | None = None

    @property
    def llm(self) -> LLMClient:
        """The client for this node's settings; its errors name this node."""
        if self._llm is None or self._llm.name != self.name:
            assert self.settings is not None
            self._llm = LLMClient(self.settings, name=self.name)
        return self._llm

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_llm": None}

    def cache_key(self, item: Any) -> dict[str, Any]:
        """What a cached result depends on besides the node's code, params and the item:
        the model and the request settings (``flowkit.CachePolicy``)."""
        assert self.settings is not None
        return request_settings(self.settings)


def request_settings(settings: LLMSettings) -> dict[str, Any]:
    """The settings that change what a model answers: provider, endpoint, model, sampling,
    reply cap, re-asks and, for the simulated provider, its simulation."""
    keep = ("provider", "base_url", "model", "temperature", "max_tokens", "max_reasks")
    found: dict[str, Any] = {name: getattr(settings, name) for name in keep}
    if settings.provider == "simulated":
        found["simulation"] = settings.simulation.model_dump(mode="json")
    return found


class ParallelLLMNode(LLMNode, fk.AsyncParallelBatchNode):
    """An ``LLMNode`` that runs exec_async for many items at once, within the limits."""
