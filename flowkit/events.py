"""Typed events from a run, delivered to observers (progress, the report, exporters).

One frozen dataclass per kind; ``kind`` names it in words. The runner builds none unless
someone observes the run, so an unobserved run pays one ``is None`` check per item. Times are
``time.monotonic()`` seconds, comparable across the worker processes of one machine.

``path`` is a node's place in the graph (flow and node names joined by "/"), ``node`` its
name, ``index`` an item's position in its batch (-1: none, e.g. a micro-batch). ``call``
numbers every exec call of a run once, so a wait recorded inside exec belongs to exactly one
call even when many copies of a node run the same item index at the same path at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    from flowkit.limits import LimiterStats
    from flowkit.results import RunInfo

INSTANT = 1e-3
"""Seconds: an exec call that starts waiting (for a limiter, say) within this long of its
start, or goes from one wait to the next within it, counts as waiting throughout, in the
run's counts and in its report. Without it, the instant a call spends before ``acquire``
would count it as running and lift the peak above the limiter's capacity. In an observed
run, garbage collection inside that instant does not count (``flowkit.pauses``)."""

Role = Literal["node", "flow"]


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened in run ``run_id`` at ``time``."""

    kind: ClassVar[str] = "event"
    time: float
    run_id: str


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    """The run of ``flow`` starts."""

    kind: ClassVar[str] = "run_start"
    flow: str


@dataclass(frozen=True, slots=True)
class RunEnded(Event):
    """The run ended: ``status`` is "done", "failed", "interrupted" or "budget"."""

    kind: ClassVar[str] = "run_end"
    flow: str
    ok: bool
    status: str = "done"
    limiters: dict[str, LimiterStats] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeStarted(Event):
    """A node (``role`` "node") or a flow ("flow") starts at ``path``."""

    kind: ClassVar[str] = "node_start"
    path: str
    node: str
    role: Role = "node"
    executor: str = ""
    limit: int | None = None
    batch: bool = False


@dataclass(frozen=True, slots=True)
class NodeEnded(Event):
    """A node or flow at ``path`` ended, ``ok`` or not."""

    kind: ClassVar[str] = "node_end"
    path: str
    node: str
    ok: bool
    role: Role = "node"


@dataclass(frozen=True, slots=True)
class BatchStarted(Event):
    """prep returned ``items`` items, or a batch flow's prep ``items`` params dicts (None: a
    generator of unknown length)."""

    kind: ClassVar[str] = "batch_start"
    path: str
    node: str
    items: int | None


@dataclass(frozen=True, slots=True)
class PassEnded(Event):
    """One pass of a batch flow at ``path`` (its sub-flow for one params dict) ended."""

    kind: ClassVar[str] = "pass_end"
    path: str
    node: str
    ok: bool


@dataclass(frozen=True, slots=True)
class CallStarted(Event):
    """Exec call ``call`` starts running on item ``index``."""

    kind: ClassVar[str] = "call_start"
    path: str
    node: str
    index: int
    call: int


@dataclass(frozen=True, slots=True)
class CallEnded(Event):
    """Exec call ``call`` ended, ``ok`` or raising."""

    kind: ClassVar[str] = "call_end"
    path: str
    node: str
    index: int
    call: int
    ok: bool


@dataclass(frozen=True, slots=True)
class CallRetried(Event):
    """Item ``index`` failed with ``error`` and runs again (try ``attempt + 1``) after
    ``wait`` seconds."""

    kind: ClassVar[str] = "call_retry"
    path: str
    node: str
    index: int
    attempt: int
    wait: float
    error: str


@dataclass(frozen=True, slots=True)
class ItemFailed(Event):
    """Item ``index`` failed for good after ``attempts`` tries; ``policy`` is the node's
    on_error ("raise" or "collect"). ``message`` is redacted."""

    kind: ClassVar[str] = "item_error"
    path: str
    node: str
    index: int
    attempts: int
    error_type: str
    message: str
    policy: str


@dataclass(frozen=True, slots=True)
class TimedOut(Event):
    """A try of exec on item ``index`` ran past the node's timeout of ``seconds``; ``how``
    says what became of it ("cancelled", "abandoned in its thread", or "stopped: its worker
    process was killed and is replaced"). It is retried or fails like any error."""

    kind: ClassVar[str] = "timeout"
    path: str
    node: str
    index: int
    seconds: float
    how: str


@dataclass(frozen=True, slots=True)
class ItemPosted(Event):
    """The node's ``post_item`` handled item ``index`` as it landed, from ``time`` for
    ``seconds`` (e.g. a line written to a file)."""

    kind: ClassVar[str] = "item_post"
    path: str
    node: str
    index: int
    seconds: float
    ok: bool = True


@dataclass(frozen=True, slots=True)
class Waited(Event):
    """An item waited ``seconds`` (ending at ``time``) for ``what``: a named ``limiter``, the
    node's limit, a worker, a batch, a retry's backoff. ``call`` is the exec call it waited
    inside (-1: before its call started)."""

    kind: ClassVar[str] = "wait"
    path: str
    node: str
    index: int
    call: int
    what: str
    seconds: float
    limiter: str | None = None


@dataclass(frozen=True, slots=True)
class LimiterChanged(Event):
    """Named limiter ``limiter`` was taken (``taken``) or given back; ``holders`` hold it now."""

    kind: ClassVar[str] = "limiter_change"
    limiter: str
    taken: bool
    holders: int


@dataclass(frozen=True, slots=True)
class LoopBlocked(Event):
    """``node``'s ``hook`` held the event loop for ``seconds`` from ``time``, at ``where``."""

    kind: ClassVar[str] = "loop_blocked"
    path: str
    node: str
    hook: str
    seconds: float
    threshold: float
    where: str


@dataclass(frozen=True, slots=True)
class MemoryGuarded(Event):
    """The memory guard engaged (resident memory ``rss_mb`` above the ceiling) or let go."""

    kind: ClassVar[str] = "memory_guard"
    engaged: bool
    rss_mb: float


@dataclass(frozen=True, slots=True)
class Usage(Event):
    """Code inside ``node``'s exec recorded ``amounts`` (tokens, LLM calls, cost...)."""

    kind: ClassVar[str] = "usage"
    path: str
    node: str
    amounts: dict[str, float]


@dataclass(frozen=True, slots=True)
class Operation(Event):
    """Code inside exec call ``call`` (item ``index``) did ``name`` from ``started`` to
    ``time``: an LLM request, a query, any step worth seeing on its own. ``attributes`` are
    what it says about itself (e.g. a model and the tokens it used); an exporter redacts them.
    """

    kind: ClassVar[str] = "operation"
    path: str
    node: str
    index: int
    call: int
    name: str
    started: float
    ok: bool
    attributes: Mapping[str, str | int | float | bool]


Subscriber = Callable[[Event], None]


class Observer:
    """Base for subscribers that also want the run's start and close.

    ``start`` is called on the event loop before the first event, with the run's live
    ``RunInfo`` (its counts are the run's own, updated as it goes); ``close`` after the last
    event, also when the run fails or is cancelled. An observer that raises is disabled for
    the rest of the run with one warning; the run goes on. One that sets ``wants_events = False``
    is only started and closed: a run observed by none but such observers builds no event.
    """

    wants_events: ClassVar[bool] = True
    calls_per_node: int | None = None
    """How many exec calls of each node this observer wants ``CallStarted``/``CallEnded`` for
    (None: every one). When every observer of a run sets a bound, the run reports each node's
    first calls up to the largest bound, and every retry; the rest cost no event."""

    def start(self, info: RunInfo) -> None:
        """The run is about to start."""

    def __call__(self, event: Event) -> None:
        """Receive one event."""

    def close(self) -> None:
        """The run is over."""
