"""A run's observers: each event is handed to every one of them, and one that raises is
dropped with one warning, never failing an item or the run (as Trio treats instruments)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from flowkit.errors import FlowkitWarning
from flowkit.events import Event, Observer, Subscriber
from flowkit.pauses import PAUSES
from flowkit.results import RunInfo


class Observers:
    """The subscribers of one run; ``Observer`` subscribers are started now and closed by
    ``close``. ``listening`` says whether any of them wants events. While an observed run
    goes on, garbage collections are timed (``flowkit.pauses``)."""

    def __init__(self, subscribers: Sequence[Subscriber], info: RunInfo) -> None:
        self._observers = [sub for sub in subscribers if isinstance(sub, Observer)]
        self._subs = [s for s in subscribers if not isinstance(s, Observer) or s.wants_events]
        self._dropped: list[Any] = []
        self._watching = bool(self._observers or self._subs)
        if self._watching:
            PAUSES.watch()
        for observer in self._observers:
            self._isolated(observer, observer.start, info)

    @property
    def listening(self) -> bool:
        return bool(self._subs)

    @property
    def calls_per_node(self) -> int | None:
        """Exec calls per node whose events someone wants: the largest bound the listening
        observers set, None (every call) when one sets none or is a plain callable."""
        bounds = [sub.calls_per_node if isinstance(sub, Observer) else None for sub in self._subs]
        if not bounds or None in bounds:
            return None
        return max(b for b in bounds if b is not None)

    def emit(self, event: Event) -> None:
        """Hand ``event`` to every subscriber."""
        for sub in self._subs:
            try:
                sub(event)
            except Exception as exc:
                self._drop(sub, exc, event.kind)

    def close(self) -> None:
        for observer in self._observers:
            if observer not in self._dropped:
                self._isolated(observer, observer.close)
        if self._watching:
            self._watching = False
            PAUSES.unwatch()

    def _isolated(self, sub: Any, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._drop(sub, exc, fn.__name__)

    def _drop(self, sub: Any, exc: Exception, where: str) -> None:
        self._subs = [s for s in self._subs if s is not sub]
        self._dropped.append(sub)
        name = getattr(sub, "__qualname__", type(sub).__qualname__)
        warnings.warn(
            f"flowkit: the observer {name} raised {type(exc).__name__}: {exc} (on {where}) "
            "and was disabled; the run goes on",
            FlowkitWarning,
            stacklevel=2,
        )
