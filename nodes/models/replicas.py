"""Model replicas: one worker process per device, each holding one copy of the model.

``ReplicaPool(factory, devices=[...])`` runs one replica per device, each in its own worker
process, started when the first batch needs it. A worker calls ``factory(device)`` once to
build its batch function (so the model is loaded there, once, never in the parent and never
per batch), then runs the batches it is sent. ``await pool.run(items)`` hands a batch to an
idle replica (starting one while fewer run than devices, else waiting for one to finish)
and returns its results, or raises its error: errors belong to the batch that raised them.

GPUs: a replica for ``cuda:K`` sees only GPU K (``CUDA_VISIBLE_DEVICES``; inside, the factory
gets "cuda:0"), so each process creates one CUDA context on one device, and GPU workers
start with ``spawn`` (a forked child cannot use CUDA). CPU: give the same "cpu" device several
times for several replicas; they split the cores (torch threads per replica). CPU workers
start with ``fork`` while the process has one thread, else ``forkserver``.

The pool is also an executor (``flowkit.executors.Executor``): with
``Runner(executors={"gpu": pool})``, a node that micro-batches (it defines ``exec_batch``) and
names it (``executor = "gpu"``) has each of its batches run by a replica's batch function. Its
worker processes are flowkit's own (``flowkit.executors.workers``): they die with the process
that started them, whatever ends it.

A model too big for one device does not belong here: see ``nodes/models/README.md``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import re
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from flowkit.errors import (
    BatchResultError,
    ConfigError,
    FlowkitError,
    PicklingError,
    WorkerCrashedError,
)
from flowkit.executors.base import Chunked, Outcome, cpu_count, portable_outcomes
from flowkit.executors.workers import Worker, WorkerPool, exchange, next_message, start_worker
from flowkit.limits import check_limit

BatchFn = Callable[[list[Any]], list[Any]]
"""A replica's batch function: one result per item, in order."""
ReplicaFactory = Callable[[str], BatchFn]
"""Builds a replica's batch function for a device; must be picklable (e.g. ``encoder.on``)."""

_DEVICE = re.compile(r"cpu|cuda:(\d+)")


class PoolClosedError(FlowkitError, RuntimeError):
    """A batch was sent to a ``ReplicaPool`` that is closed."""


def _replica_main(
    conn: Connection, factory: bytes, device: str, visible_gpu: str | None, threads: int | None
) -> None:
    """Worker process: build the batch function once, then answer batches until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if visible_gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible_gpu
        device = "cuda:0"
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when imported later
        torch = sys.modules.get("torch")  # imported already when forked from a torch user
        if torch is not None:
            torch.set_num_threads(threads)
    fn: BatchFn | None = None
    load_error: Exception | None = None
    try:
        fn = pickle.loads(factory)(device)
    except Exception as exc:
        exc.add_note(f"flowkit: raised while building the replica for {device!r}")
        load_error = exc
    while True:
        msg = next_message(conn)
        if msg is None:
            return
        started = time.monotonic()
        outcome: Outcome
        try:
            if fn is None:
                raise load_error  # type: ignore[misc]
            outcome = (True, fn(pickle.loads(msg)), started, time.monotonic())
        except Exception as exc:
            outcome = (False, exc, started, time.monotonic())
        conn.send_bytes(portable_outcomes([outcome], f"replica on {device}"))


def _start_replica(ctx: Any, factory: bytes, device: str, threads: int | None, slot: int) -> Worker:
    """Start the worker process of the replica for ``device``."""
    gpu = _DEVICE.fullmatch(device)
    visible = None
    if gpu is not None and gpu.group(1) is not None:
        index = int(gpu.group(1))
        parent_visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        visible = parent_visible.split(",")[index] if parent_visible else str(index)
    proc, conn = start_worker(
        ctx,
        _replica_main,
        factory,
        device,
        visible,
        None if visible else threads,
        name=f"flowkit-replica-{device}",
    )
    return Worker(proc, conn, slot)


class ReplicaPool:
    """One model replica per device, each in its own worker process, fed whole batches.

    ``factory(device)`` builds a replica's batch function inside its worker; it must be
    picklable, e.g. ``SentenceEncoder().on``. ``devices`` lists one device per replica:
    "cuda:N" at most once each, "cpu" as often as wanted. By default: every visible GPU, else
    ``replicas`` (default 1) CPU replicas. ``threads_per_replica`` sets torch's threads in CPU
    replicas (default: the cores divided among them). ``start_method`` overrides how workers
    start. Close the pool (``with`` / ``async with`` / ``close()``) to stop its workers.
    """

    def __init__(
        self,
        factory: ReplicaFactory,
        *,
        devices: Sequence[str] | None = None,
        replicas: int | None = None,
        threads_per_replica: int | None = None,
        start_method: str | None = None,
    ) -> None:
        self.devices = _resolve_devices(devices, replicas)
        self.size = len(self.devices)
        try:
            self._factory = pickle.dumps(factory, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise PicklingError(
                f"ReplicaPool: the factory {factory!r:.80} cannot be pickled to send to its "
                f"workers ({exc}); pass a module-level function or a bound method of a "
                "picklable object, such as SentenceEncoder().on"
            ) from exc
        on_cpu = self.devices.count("cpu")
        if threads_per_replica is not None:
            check_limit(threads_per_replica, "ReplicaPool threads_per_replica")
        elif on_cpu:
            threads_per_replica = max(1, cpu_count() // on_cpu)
        self.threads_per_replica = threads_per_replica
        if start_method is None:
            if any(d != "cpu" for d in self.devices) or sys.platform != "linux":
                start_method = "spawn"
            else:
                start_method = "fork" if threading.active_count() == 1 else "forkserver"
        self._ctx = mp.get_context(start_method)
        self._pool = WorkerPool(self.size, self._spawn)
        self._finalizer = weakref.finalize(self, self._pool.close, 0.0)

    def _spawn(self, slot: int) -> Worker:
        device = self.devices[slot]
        return _start_replica(self._ctx, self._factory, device, self.threads_per_replica, slot)

    @property
    def pids(self) -> list[int]:
        """Process ids of the replicas running now, in device order."""
        return self._pool.pids

    async def run(self, items: Sequence[Any]) -> list[Any]:
        """Run one batch on an idle replica; returns one result per item, in order."""
        if self._pool.closed:
            raise PoolClosedError("ReplicaPool is closed: create a new pool to run more batches")
        batch = list(items)
        try:
            msg = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise PicklingError(
                f"ReplicaPool: a batch of {len(batch)} item(s) cannot be pickled to send to a "
                f"replica ({exc}); send plain data"
            ) from exc
        try:
            worker = await self._pool.checkout()
        except RuntimeError:
            raise PoolClosedError("ReplicaPool was closed while a batch waited") from None
        device = self.devices[worker.slot]
        healthy = False
        try:
            data = await exchange(worker.conn, msg)
            healthy = True
        except (EOFError, OSError):
            if self._pool.closed:
                raise PoolClosedError("ReplicaPool was closed while a batch ran") from None
            worker.proc.join(1)
            raise WorkerCrashedError(
                f"ReplicaPool: the replica on {device} (pid {worker.proc.pid}) died "
                f"(exit code {worker.proc.exitcode}) while running a batch of {len(batch)}: it "
                "ran out of memory, crashed in native code, or (started by forkserver or spawn) "
                "re-ran a script that lacks an `if __name__ == '__main__':` guard"
            ) from None
        finally:
            self._pool.checkin(worker, healthy)
        [(ok, value, _, _)] = pickle.loads(data)
        if not ok:
            value.add_note(f"flowkit: raised by the replica on {device}")
            raise value
        if not isinstance(value, list) or len(value) != len(batch):
            got = len(value) if isinstance(value, list) else type(value).__name__
            raise BatchResultError(
                f"ReplicaPool: the replica on {device} returned {got} results for "
                f"{len(batch)} items; its batch function must return a list, one per item"
            )
        return value

    def bind(self, node: Any) -> ReplicaBinding:
        """As an executor: ``node``'s batches go to the replicas (see the module's doc)."""
        return ReplicaBinding(self, node.name)

    def close(self, ok: bool = True, timeout: float = 5.0) -> None:
        """Stop the replicas: idle ones finish cleanly (killed after ``timeout`` s), busy ones
        are killed, and their batches fail with ``PoolClosedError``; waits for all."""
        self._pool.close(timeout)

    def __enter__(self) -> ReplicaPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> ReplicaPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(
            "a ReplicaPool stays in the process that created it; a node that uses one runs "
            "on the event loop (executor='async') and sends batches to the pool's workers"
        )

    def __repr__(self) -> str:
        state = "closed" if self._pool.closed else f"{len(self.pids)} running"
        return f"<ReplicaPool {', '.join(self.devices)}: {state}>"


class ReplicaBinding(Chunked):
    """A node whose batches a ``ReplicaPool`` runs, as the node's executor."""

    __slots__ = ("name", "pool")

    def __init__(self, pool: ReplicaPool, name: str) -> None:
        self.pool, self.name = pool, name

    async def run(self, items: Sequence[Any], attempts: Sequence[int] | None) -> list[Outcome]:
        if attempts is not None:
            raise ConfigError(
                f"{self.name}: a ReplicaPool runs whole batches; define exec_batch on the node "
                "so its items are micro-batched"
            )
        started = time.monotonic()
        try:
            result = await self.pool.run(items)
        except Exception as exc:
            return [(False, exc, started, time.monotonic())]
        return [(True, result, started, time.monotonic())]


def _resolve_devices(devices: Sequence[str] | None, replicas: int | None) -> tuple[str, ...]:
    if replicas is not None:
        check_limit(replicas, "ReplicaPool replicas")
    if devices is None:
        gpus = _visible_gpus()
        if gpus:
            return tuple(f"cuda:{k}" for k in range(gpus))[: replicas or gpus]
        return ("cpu",) * (replicas or 1)
    if isinstance(devices, str):
        devices = [devices]
    out = tuple(devices)
    if not out:
        raise ConfigError("ReplicaPool devices is empty: list at least one device")
    for device in out:
        if not isinstance(device, str) or not _DEVICE.fullmatch(device):
            raise ConfigError(f"ReplicaPool: unknown device {device!r}; use 'cpu' or 'cuda:N'")
        if device != "cpu" and out.count(device) > 1:
            raise ConfigError(
                f"ReplicaPool: {device} is listed {out.count(device)} times; a GPU holds one "
                "replica (one process, one CUDA context). Use bigger batches to fill it"
            )
    if replicas is not None and replicas != len(out):
        raise ConfigError(
            f"ReplicaPool got {len(out)} devices and replicas={replicas}; give one of them"
        )
    return out


def _visible_gpus() -> int:
    """GPUs torch can see, or 0 without torch. Counting does not create a CUDA context."""
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count())
