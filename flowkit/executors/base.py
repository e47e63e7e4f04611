"""What every executor shares: the ``Executor`` protocol, a node pickled once, and how a
worker runs a chunk of items (each failure caught on its own, cur_retry set per item)."""

from __future__ import annotations

import hashlib
import os
import pickle
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from flowkit.context import current_retry
from flowkit.errors import PicklingError, RemoteError

Outcome = tuple[bool, Any, float, float]  # (ok, result or exception, started, ended)


class Executor(Protocol):
    """Where a node's sync exec runs off the event loop: threads, processes or Ray.

    ``prepare`` turns a node into what ``run`` sends (the node itself, or a ``NodePayload``
    pickled once); ``run`` runs exec on each item (``attempts`` None: one ``exec_batch``
    call on them all) and returns per-item outcomes; ``close`` ends the pool with the run.
    """

    size: int

    def prepare(self, node: Any) -> Any: ...

    async def run(
        self, prepared: Any, items: Sequence[Any], attempts: Sequence[int] | None
    ) -> list[Outcome]: ...

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
