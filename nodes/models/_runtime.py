"""What every model backend needs: the ``ml`` extra checked early, models loaded once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from types import ModuleType
from typing import Any

from flowkit import extras

_models: dict[Hashable, Any] = {}
_lock = threading.RLock()


def check_installed(purpose: str, *modules: str) -> None:
    """Raise ``MissingExtraError`` naming ``flowkit[ml]`` unless ``modules`` are installed.

    Only looks the modules up (no import), so building a node stays cheap and the heavy
    imports happen where the model is loaded: in the worker that runs it.
    """
    extras.check_installed(purpose, *modules, extra="ml")


def require(purpose: str, module: str) -> ModuleType:
    """Import ``module`` of the ``ml`` extra, or raise ``MissingExtraError`` saying so."""
    return extras.require(module, purpose, "ml")


def load_once(key: Hashable, loader: Callable[[], Any]) -> Any:
    """The object ``loader()`` builds, built at most once per process for ``key``."""
    with _lock:
        if key not in _models:
            _models[key] = loader()
        return _models[key]
