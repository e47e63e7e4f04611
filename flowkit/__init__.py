"""flowkit: PocketFlow-style nodes and flows whose parallelism is real, bounded and visible.

The public names are those in the ``__all__`` of the modules in ``_PUBLIC`` (nodes, flows,
limits, retries, results, errors and the runner), each listed once, there. They are
imported on first use (PEP 562), lightest module first, so ``import flowkit`` costs next to
nothing and a script pays only for what it touches: node classes do not load the runner.

This module is also the composition root: it plugs the default engine of PocketFlow's
``node.run()``, the runner's standard observers (progress, report, blocking detector, live
view) and the HTML of a ``RunInfo`` (its report, inline in a notebook) into the seams of
``flowkit.engine``, each built only when first needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flowkit import engine as _engine

if TYPE_CHECKING:
    from flowkit.errors import *  # noqa: F403
    from flowkit.flow import *  # noqa: F403
    from flowkit.limits import *  # noqa: F403
    from flowkit.node import *  # noqa: F403
    from flowkit.results import *  # noqa: F403
    from flowkit.retry import *  # noqa: F403
    from flowkit.runner import *  # noqa: F403

_PUBLIC = (
    "flowkit.errors",
    "flowkit.node",
    "flowkit.flow",
    "flowkit.limits",
    "flowkit.retry",
    "flowkit.results",
    "flowkit.runner",
)


def _default_engine() -> Any:
    from flowkit.runner.engine import RunnerEngine

    return RunnerEngine()


def _standard_observers(runner: Any, flow: Any, info: Any, emit: Any) -> list[Any]:
    from flowkit.observers import standard_observers

    return standard_observers(runner, flow, info, emit)


def _run_html(info: Any) -> str:
    from flowkit.report.inline import run_html

    return run_html(info)


_engine.install(_default_engine)
_engine.install_observers(_standard_observers)
_engine.install_html(_run_html)


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return sorted(n for m in _PUBLIC for n in importlib.import_module(m).__all__)
    for home in _PUBLIC:
        module = importlib.import_module(home)
        if name in module.__all__:
            value = getattr(module, name)
            globals()[name] = value
            return value
    try:  # a submodule, e.g. flowkit.events after a bare ``import flowkit``
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module 'flowkit' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *__getattr__("__all__")})
