"""What node code reads from the run around it: the try in progress and the engine.

A leaf module, so ``flowkit.node`` can offer PocketFlow's ``node.run()`` and ``cur_retry``
without importing the runner: the runner package installs itself here as the engine when it
is imported, and ``engine()`` imports it by name the first time a node runs on its own.
"""

from __future__ import annotations

import importlib
from contextvars import ContextVar
from typing import Any, Protocol

current_retry: ContextVar[int] = ContextVar("flowkit_cur_retry", default=0)
"""Index of the try in progress for the item being executed (0 on the first try)."""

DEFAULT_ENGINE = "flowkit.runner"
"""The module that installs the default engine when imported."""


class Engine(Protocol):
    """Runs a node or flow for PocketFlow's ``node.run(shared)`` and ``run_async(shared)``."""

    def run(self, node: Any, shared: Any) -> Any: ...

    async def run_async(self, node: Any, shared: Any) -> Any: ...


_engine: Engine | None = None


def install_engine(engine: Engine) -> None:
    """Make ``engine`` the one that ``node.run()`` and ``node.run_async()`` use."""
    global _engine
    _engine = engine


def engine() -> Engine:
    """The installed engine, importing the default one on first use."""
    if _engine is None:
        importlib.import_module(DEFAULT_ENGINE)
    assert _engine is not None, f"{DEFAULT_ENGINE} did not install an engine"
    return _engine
