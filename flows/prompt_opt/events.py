"""What an optimisation tells its callbacks, and the live log built on them.

Each event is a frozen dataclass with the round, the LLM requests billed so far, the
dollars so far and the seconds since the start. A callback is either a callable that takes
every event, or an object with ``on_<kind>`` methods for the kinds it wants
(``on_candidate_accepted(event)``, as gepa's ``GEPACallback`` does). Callbacks run on the
event loop between steps; one that raises is dropped with a warning, never failing the run.
``LiveLog`` writes every event as a JSON line (``events.jsonl`` in the output folder) and
prints one line per accepted candidate and per round.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO

log = logging.getLogger("flows.prompt_opt")


@dataclass(frozen=True)
class OptEvent:
    """Where the run stood when something happened."""

    kind: ClassVar[str] = "event"
    round: int
    calls: int
    cost: float
    elapsed: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class CandidateProposed(OptEvent):
    """A child was written (by the reflector, an LLM merge or a crossover)."""

    kind: ClassVar[str] = "candidate_proposed"
    candidate: str
    how: str
    parents: tuple[str, ...]
    component: str | None
    components: dict[str, str]


@dataclass(frozen=True)
class CandidateAccepted(OptEvent):
    """A child passed its gate and was scored on validation; it joins the pool."""

    kind: ClassVar[str] = "candidate_accepted"
    candidate: str
    how: str
    parents: tuple[str, ...]
    gate_before: float | None
    gate_after: float | None
    val_score: float


@dataclass(frozen=True)
class CandidateRejected(OptEvent):
    """A child failed its gate (or was a twin of an earlier candidate)."""

    kind: ClassVar[str] = "candidate_rejected"
    candidate: str
    how: str
    parents: tuple[str, ...]
    reason: str
    gate_before: float | None
    gate_after: float | None


@dataclass(frozen=True)
class BestChanged(OptEvent):
    """Another candidate has the best validation score."""

    kind: ClassVar[str] = "best_changed"
    candidate: str
    score: float
    components: dict[str, str]


@dataclass(frozen=True)
class RoundEnded(OptEvent):
    """A round's proposals are all settled."""

    kind: ClassVar[str] = "round_ended"
    best: str | None
    best_score: float
    front: int
    accepted: int


@dataclass(frozen=True)
class OptimisationEnded(OptEvent):
    """The search stopped and the best is named (after any re-score and the test)."""

    kind: ClassVar[str] = "optimisation_ended"
    best: str | None
    best_score: float
    test_score: float | None
    stop_reason: str


Callback = Callable[[OptEvent], None] | object
"""A callable taking every event, or an object with ``on_<kind>`` methods."""


class Callbacks:
    """Delivers each event to every callback; drops one that raises, with a warning."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def emit(self, event: OptEvent) -> None:
        for cb in list(self.callbacks):
            method = getattr(cb, f"on_{event.kind}", None)
            if method is None and callable(cb) and not _has_handlers(cb):
                method = cb
            if method is None:
                continue
            try:
                method(event)
            except Exception as exc:
                self.callbacks.remove(cb)
                log.warning(
                    "prompt-opt: callback %s raised %s: %s; it gets no more events",
                    getattr(cb, "__qualname__", type(cb).__name__),
                    type(exc).__name__,
                    exc,
                )


def _has_handlers(cb: object) -> bool:
    return any(name.startswith("on_") for name in dir(type(cb)))


class LiveLog:
    """Writes every event as a JSON line to ``path`` and prints the main ones to ``stream``."""

    def __init__(self, path: Path | None = None, stream: TextIO | None = None) -> None:
        self.path, self.stream = path, stream
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", encoding="utf-8", buffering=1)

    def __call__(self, event: OptEvent) -> None:
        if self._file is not None:
            self._file.write(json.dumps(event.to_dict(), default=str) + "\n")
        line = describe(event)
        if line and self.stream is not None:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def describe(event: OptEvent) -> str:
    """One line for the events a person watches; "" for the others."""
    head = f"round {event.round}:"
    spent = f"{event.calls} calls" + (f", ${event.cost:.4f}" if event.cost else "")
    if isinstance(event, CandidateAccepted):
        gate = (
            f"gate {event.gate_before:.2f} -> {event.gate_after:.2f}, "
            if event.gate_before is not None and event.gate_after is not None
            else ""
        )
        return (
            f"{head} {event.candidate} ({event.how} of {', '.join(event.parents)}) accepted: "
            f"{gate}validation {event.val_score:.3f}"
        )
    if isinstance(event, CandidateRejected):
        return f"{head} {event.candidate} ({event.how}) rejected: {event.reason}"
    if isinstance(event, RoundEnded):
        return (
            f"{head} best {event.best} {event.best_score:.3f} on validation, front "
            f"{event.front}; {spent}, {event.elapsed:.1f} s"
        )
    if isinstance(event, OptimisationEnded):
        test = "" if event.test_score is None else f", test {event.test_score:.3f}"
        return f"done: best {event.best} {event.best_score:.3f} on validation{test}; {spent}"
    return ""
