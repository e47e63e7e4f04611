"""The report's data model: ``RunReport`` and its parts, as written to ``report.json``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from flowkit.budgets import BudgetStats
from flowkit.limits import LimiterStats
from flowkit.results import ErrorRecord

SeriesSource = Literal["calls", "holders", "users"]
"""What a series' "running" counts (see ``Series``)."""


class Bar(BaseModel):
    """One stretch of an exec call on the timeline; times are seconds from the run's start.

    ``kind`` "run" is a call running; "wait" is an item waiting for ``what`` (a limiter, the
    node's limit, a worker, a retry's backoff). Run and wait bars have lanes of their own.
    """

    node: str
    index: int
    lane: int
    start: float
    end: float
    ok: bool
    kind: Literal["run", "wait"] = "run"
    what: str = ""


class LoopBlock(BaseModel):
    """The event loop was stuck in ``node``'s ``hook`` for ``seconds`` from ``start``, at
    ``where`` (file:line)."""

    node: str
    hook: str
    start: float
    seconds: float
    where: str


ErrorEntry = ErrorRecord
"""An item that failed for good, as the report lists it (message and traceback redacted)."""


class NodeReport(BaseModel):
    """One node over the run (every copy of it, at every path).

    ``wall_time`` runs from its first item's start to its last item's end; ``exec_time`` sums
    the running time of its exec calls (waits inside exec left out); ``busy_time`` is the
    time at least one was running. ``mean_in_flight`` (exec / busy) is the concurrency it
    achieved while working; ``speedup`` (exec / wall) is what that bought over running the
    same calls one after another. ``wait_time`` sums its items' waits; ``cpu_time`` the CPU
    its calls used in threads; ``usage`` what its exec recorded (LLM calls, tokens,
    retries...); ``limiters`` the named limiters it took; ``full_share`` (for a node on a
    pool of threads or processes) the share of its time with every place of the pool busy.
    ``timeouts`` counts tries that ran past its ``timeout`` (seconds); ``cached`` the items
    reused from the runner's cache.
    """

    name: str
    paths: list[str]
    executor: str
    limit: int | None
    items: int
    failed: int
    retries: int
    wall_time: float
    exec_time: float
    busy_time: float
    mean_in_flight: float
    peak_in_flight: int
    speedup: float
    limiter_wait: dict[str, float]
    loop_blocked: float
    findings: list[str]
    wait_time: float = 0.0
    cpu_time: float = 0.0
    off_cpu_time: float = 0.0
    full_share: float = 0.0
    usage: dict[str, float] = {}
    limiters: list[str] = []
    timeout: float | None = None
    timeouts: int = 0
    cached: int = 0


class Mark(BaseModel):
    """``node``'s ``post_item`` handled item ``index`` at ``at`` (seconds from the run's
    start): e.g. a result line written as the item landed."""

    node: str
    index: int
    at: float


class Series(BaseModel):
    """Calls running and waiting over time for one node or one named limiter, as steps.

    From ``t[i]`` (seconds from the run's start) until ``t[i + 1]`` (the last: the run's
    end), ``running[i]`` calls ran and ``waiting[i]`` waited. A long series is cut into
    stretches of equal time: then ``running``/``waiting`` hold each stretch's time-weighted
    mean and ``running_peak``/``waiting_peak`` its highest count (empty when exact).
    ``limit`` is the node's limit or the limiter's ``max_concurrency``. ``source`` says what
    "running" counts: "calls" (a node's running calls), "holders" (a limiter's holders, as
    the runner reported each hold) or "users" (for a limiter, the calls running in the nodes
    that take it: an upper bound on its holders, since a call may work outside the limiter).
    Waiting for a limiter counts the waits for that limiter only.
    """

    name: str
    kind: Literal["node", "limiter"]
    limit: int | None = None
    source: SeriesSource = "calls"
    t: list[float]
    running: list[float]
    waiting: list[float]
    running_peak: list[int] = []
    waiting_peak: list[int] = []

    @property
    def peak_running(self) -> int:
        """The most calls running (or holders) at once."""
        return int(max(self.running_peak or self.running, default=0))

    @property
    def peak_waiting(self) -> int:
        """The most calls waiting at once."""
        return int(max(self.waiting_peak or self.waiting, default=0))


class RunReport(BaseModel):
    """Everything ``report.json`` holds; ``flowkit report DIR`` renders the rest from it."""

    format: int = 1
    run_id: str
    flow: str
    ok: bool
    started_at: datetime
    wall_time: float
    nodes: list[NodeReport]
    spans: int
    lanes: int
    bars: list[Bar]
    blocks: list[LoopBlock]
    error_count: int
    errors: list[ErrorEntry]
    segments: int = 0
    waits: int = 0
    queued: int = 0
    wait_lanes: int = 0
    limiters: list[LimiterStats] = []
    series: list[Series] = []
    status: str = ""
    budgets: list[BudgetStats] = []
    marks: list[Mark] = []

    @property
    def outcome(self) -> str:
        """How the run ended, in a word: ok, failed, interrupted, or budget spent."""
        if self.ok:
            return "ok"
        return {"budget": "budget spent", "interrupted": "interrupted"}.get(self.status, "failed")

    @property
    def sampled(self) -> bool:
        """Whether the timeline draws a sample of the running stretches and waits."""
        running = sum(1 for b in self.bars if b.kind == "run")
        segments = self.segments or self.spans
        return running < segments or len(self.bars) - running < self.waits - self.queued
