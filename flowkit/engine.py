"""The seams between flowkit's floors: the try in progress (read by nodes), the engine behind
PocketFlow's ``node.run()``, the observers a runner's options ask for, and the HTML of a run.

A leaf module, so ``flowkit.node`` can offer ``node.run()`` and ``cur_retry`` without
importing the runner, the runner can start progress bars and reports without importing
them, and a ``RunInfo`` can show its report in a notebook without importing the report. The
package's composition root (``flowkit/__init__.py``) installs all three, lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

current_retry: ContextVar[int] = ContextVar("flowkit_cur_retry", default=0)
"""Index of the try in progress for the item being executed (0 on the first try)."""


class Engine(Protocol):
    """Runs a node or flow for PocketFlow's ``node.run(shared)`` and ``run_async(shared)``."""

    def run(self, node: Any, shared: Any) -> Any: ...

    async def run_async(self, node: Any, shared: Any) -> Any: ...


_engine: Engine | None = None
_factory: Callable[[], Engine] | None = None


def install(factory: Callable[[], Engine]) -> None:
    """Make ``factory()`` the engine that ``node.run()`` and ``node.run_async()`` use (built
    on first use)."""
    global _engine, _factory
    _engine, _factory = None, factory


def engine() -> Engine:
    """The installed engine."""
    global _engine
    if _engine is None:
        if _factory is None:
            raise RuntimeError("no flowkit engine is installed: import flowkit first")
        _engine = _factory()
    return _engine


ObserverFactory = Callable[[Any, Any, Any, Any], list[Any]]
"""``(runner, flow, run_info, emit) -> observers`` for the options a runner was given."""
_observers: ObserverFactory | None = None


def install_observers(factory: ObserverFactory) -> None:
    """Set how a runner builds the observers its options ask for (progress, the report, the
    blocking detector): they sit above the runner, which never imports them."""
    global _observers
    _observers = factory


def standard_observers(runner: Any, flow: Any, info: Any, emit: Any) -> list[Any]:
    """The observers ``runner``'s options ask for, for a run of ``flow``."""
    return [] if _observers is None else _observers(runner, flow, info, emit)


_html: Callable[[Any], str] | None = None


def install_html(render: Callable[[Any], str]) -> None:
    """Set how a ``RunInfo`` renders as HTML (its report, inline in a notebook)."""
    global _html
    _html = render


def run_html(info: Any) -> str:
    """``info`` (a ``RunInfo``) as HTML, by the installed renderer (empty without one)."""
    return "" if _html is None else _html(info)
