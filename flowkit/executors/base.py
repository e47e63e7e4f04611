"""The ``Executor`` protocol every executor implements, and what executors share: a node
pickled once, and how a worker runs a chunk of items (each failure caught on its own).

An executor is an object: the runner asks it to ``bind`` a node once per batch and then
hands the binding its items, one at a time (``call``) or in chunks (``run``, for executors
that send work to other processes). Users may pass their own:
``Runner(executors={"gpu": MyExecutor()})``, named by a node as ``executor = "gpu"``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from flowkit.engine import current_retry
from flowkit.errors import PicklingError, RemoteError

Outcome = tuple[bool, Any, float, float]
"""One item's outcome: (ok, result or exception, started, ended), ``time.monotonic()``."""


class Binding(Protocol):
    """A node bound to an executor for one batch: how its exec runs there.

    ``chunked`` executors take several items per trip (``run``); the others take one item
    per ``call``, whose result is awaited when ``awaits``. ``retry`` runs one more try of an
    item with ``node.cur_retry`` reading ``attempt``. ``run`` with ``attempts`` None is one
    ``exec_batch`` call on all the items, returning a single outcome holding the results.
    """

    chunked: bool
    awaits: bool

    def call(self, item: Any) -> Any: ...

    def retry(self, item: Any, attempt: int) -> Awaitable[Any]: ...

    async def run(self, items: Sequence[Any], attempts: Sequence[int] | None) -> list[Outcome]: ...


class Executor(Protocol):
    """Where a node's exec runs: the event loop, threads, worker processes, Ray, or a user's
    own. ``size`` is how many calls it runs at once (a node on it runs at most that many
    unless its limit says fewer); ``close`` ends its pool when the run ends (``ok`` False:
    after a failure or a cancel, so busy work is abandoned rather than awaited)."""

    size: int

    def bind(self, node: Any) -> Binding: ...

    def close(self, ok: bool = True) -> None: ...


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def call_with_retry_index(fn: Callable[[Any], Any], item: Any, attempt: int) -> Any:
    """Call ``fn(item)`` with ``node.cur_retry`` reading ``attempt``."""
    token = current_retry.set(attempt)
    try:
        return fn(item)
    finally:
        current_retry.reset(token)


def run_items(node: Any, items: Sequence[Any], attempts: Sequence[int] | None) -> list[Outcome]:
    """Run ``node.exec`` on each item, catching each failure separately; with ``attempts``
    None, run ``node.exec_batch`` once on all items (one outcome holding the result list)."""
    out: list[Outcome] = []
    clock = time.monotonic
    if attempts is None:
        started = clock()
        try:
            return [(True, node.exec_batch(list(items)), started, clock())]
        except Exception as exc:
            return [(False, exc, started, clock())]
    for item, attempt in zip(items, attempts, strict=True):
        started = clock()
        try:
            out.append((True, call_with_retry_index(node.exec, item, attempt), started, clock()))
        except Exception as exc:
            out.append((False, exc, started, clock()))
    return out


def portable_outcomes(outcomes: list[Outcome], node_name: str) -> bytes:
    """Pickle outcomes; a result or exception that can't be pickled becomes an error."""
    try:
        return pickle.dumps(outcomes, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        fixed: list[Outcome] = []
        for ok, value, started, ended in outcomes:
            try:
                pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                fixed.append((ok, value, started, ended))
            except Exception as exc:
                fixed.append((False, _unpicklable(node_name, ok, value, exc), started, ended))
        return pickle.dumps(fixed, protocol=pickle.HIGHEST_PROTOCOL)


def _unpicklable(node_name: str, ok: bool, value: Any, exc: Exception) -> Exception:
    if ok:
        return PicklingError(
            f"{node_name}: exec returned {type(value).__name__}, which cannot be pickled "
            f"back from the worker ({exc}); return plain data instead"
        )
    tb = "".join(traceback.format_exception(value))
    return RemoteError(type(value).__name__, str(value), tb)


class NodePayload:
    """A node pickled once, with a digest that identifies it in worker caches."""

    __slots__ = ("data", "key", "name")

    def __init__(self, node: Any) -> None:
        self.name = node.name
        try:
            self.data = pickle.dumps(node, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise PicklingError(
                f"{node.name}: the node cannot be pickled to run in worker processes ({exc}). "
                "Keep unpicklable things (clients, locks, open files) out of the node's "
                "attributes, create them inside exec, or use executor='thread'"
            ) from exc
        self.key = hashlib.blake2b(self.data, digest_size=16).digest()


class Chunked:
    """Base of the bindings of executors that send chunks of items elsewhere (worker
    processes, Ray): ``retry`` is a chunk of one; ``call`` is not used."""

    chunked = True
    awaits = True

    def call(self, item: Any) -> Any:
        raise TypeError("a chunked executor takes items through run()")

    async def run(self, items: Sequence[Any], attempts: Sequence[int] | None) -> list[Outcome]:
        raise NotImplementedError

    async def retry(self, item: Any, attempt: int) -> Any:
        [(ok, value, _, _)] = await self.run([item], [attempt])
        if not ok:
            raise value
        return value


class ChunkSizer:
    """Picks how many items travel to a worker at once: about 20 ms of work per trip."""

    TARGET = 0.02
    MAX = 256

    def __init__(self, fixed: int | None, size: int | None, workers: int) -> None:
        self.fixed, self.size, self.workers = fixed, size, workers
        self.sent = 0
        self.per_item: float | None = None

    def next(self) -> int:
        if self.fixed:
            n = self.fixed
        elif self.per_item is None:
            n = 1
        else:
            n = max(1, min(self.MAX, int(self.TARGET / max(self.per_item, 1e-7))))
            if self.size is not None:  # leave work for every worker near the end
                n = min(n, max(1, (self.size - self.sent) // (2 * self.workers)))
        self.sent += n
        return n

    def observe(self, count: int, seconds: float) -> None:
        sample = seconds / count
        self.per_item = sample if self.per_item is None else 0.7 * self.per_item + 0.3 * sample


class NoExec:
    """A binding whose exec never runs: what a node with no tries left gives (PocketFlow's
    ``max_retries=0``) is None."""

    chunked = False
    awaits = False

    @staticmethod
    def call(item: Any) -> Any:
        return None

    async def retry(self, item: Any, attempt: int) -> Any:
        return None

    async def run(self, items: Sequence[Any], attempts: Sequence[int] | None) -> list[Outcome]:
        return [(True, None, 0.0, 0.0) for _ in items]
