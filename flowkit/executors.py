"""Where exec runs when it leaves the event loop: threads, worker processes, Ray.

Process and Ray executors take items in chunks. A node travels to each worker process once
(keyed by a digest of its pickle) rather than with every chunk. Worker processes ignore
SIGINT, are killed when their chunk is cancelled, and are all stopped when the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from flowkit.errors import PicklingError, RemoteError, WorkerCrashedError
from flowkit.extras import require
from flowkit.limits import Slots
from flowkit.node import _cur_retry

Outcome = tuple[bool, Any, float, float]  # (ok, result or exception, started, ended)


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def call_with_retry_index(fn: Callable[[Any], Any], item: Any, attempt: int) -> Any:
    """Call ``fn(item)`` with ``node.cur_retry`` reading ``attempt``."""
    token = _cur_retry.set(attempt)
    try:
        return fn(item)
    finally:
        _cur_retry.reset(token)


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


WORKER_CACHE = 64
"""Nodes a worker keeps, least recently used first out; the parent mirrors the order."""


def _remember(cache: OrderedDict[bytes, Any], key: bytes, value: Any) -> None:
    """Record a use of ``key`` the same way in a worker and in its parent's mirror."""
    if value is not None:
        cache[key] = value
        if len(cache) > WORKER_CACHE:
            cache.popitem(last=False)
    cache.move_to_end(key)


def next_message(conn: Connection) -> bytes | None:
    """In a worker: the parent's next message, or None once the parent closes the pool."""
    try:
        msg = conn.recv_bytes()
    except (EOFError, OSError):
        return None
    return msg or None  # an empty message asks the worker to exit


def start_worker(
    ctx: Any, target: Callable[..., None], *args: Any, name: str | None = None
) -> tuple[Any, Connection]:
    """Start a daemon worker process running ``target(conn, *args)``; its process and the
    parent's end of the pipe."""
    parent, child = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=target, args=(child, *args), daemon=True, name=name)
    proc.start()
    child.close()
    return proc, parent


def _worker_main(conn: Connection) -> None:
    """Worker process loop: receive (key, node pickle or None, attempts, items), reply."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cache: OrderedDict[bytes, Any] = OrderedDict()
    while True:
        msg = next_message(conn)
        if msg is None:
            return
        key, node_data, attempts, items = pickle.loads(msg)
        _remember(cache, key, None if node_data is None else pickle.loads(node_data))
        node = cache[key]
        conn.send_bytes(portable_outcomes(run_items(node, items, attempts), node.name))


def _context(start_method: str | None) -> Any:
    """Fork while the process has a single thread (fast, no main-module guard needed);
    otherwise forkserver, since forking a threaded process can deadlock the child."""
    if start_method is None:
        if sys.platform != "linux":
            start_method = "spawn"
        else:
            start_method = "fork" if threading.active_count() == 1 else "forkserver"
    return mp.get_context(start_method)


class _Worker:
    __slots__ = ("conn", "known", "proc")

    def __init__(self, start_method: str | None) -> None:
        self.proc, self.conn = start_worker(_context(start_method), _worker_main)
        self.known: OrderedDict[bytes, bool] = OrderedDict()  # mirrors the worker's cache

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


async def exchange(conn: Connection, msg: bytes) -> bytes:
    """Send ``msg`` to a worker and wait for its reply without blocking the event loop;
    EOFError or OSError when the worker is gone."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    fd = conn.fileno()

    def readable() -> None:
        loop.remove_reader(fd)
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError) as exc:
            if not done.done():
                done.set_exception(exc)
            return
        if not done.done():
            done.set_result(data)

    conn.send_bytes(msg)
    loop.add_reader(fd, readable)
    try:
        return await done
    finally:
        loop.remove_reader(fd)


class ProcessExecutor:
    """A pool of worker processes driven from the event loop."""

    def __init__(self, workers: int, start_method: str | None = None) -> None:
        self.size = workers
        self._start_method = start_method
        self._idle: deque[_Worker] = deque()
        self._busy: set[_Worker] = set()
        self._slots = Slots(workers)  # one per worker that may be busy at once
        self._closed = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.proc.pid for w in (*self._idle, *self._busy) if w.proc.pid is not None]

    async def _checkout(self) -> _Worker:
        await self._slots.acquire()
        try:
            worker = self._idle.popleft() if self._idle else _Worker(self._start_method)
        except BaseException:
            self._slots.release()
            raise
        self._busy.add(worker)
        return worker

    def _checkin(self, worker: _Worker, healthy: bool) -> None:
        self._busy.discard(worker)
        if healthy and not self._closed:
            self._idle.append(worker)
        else:
            worker.kill()
        self._slots.release()

    async def run(
        self, payload: NodePayload, items: Sequence[Any], attempts: Sequence[int] | None
    ) -> list[Outcome]:
        """Run ``payload``'s exec over ``items`` in one worker and return per-item outcomes
        (``attempts`` None: one exec_batch call, one outcome)."""
        msg = self._encode(payload, items, attempts, with_node=False)
        worker = await self._checkout()
        healthy = False
        try:
            if payload.key in worker.known:
                _remember(worker.known, payload.key, None)
            else:
                msg = self._encode(payload, items, attempts, with_node=True)
                _remember(worker.known, payload.key, True)
            try:
                data = await exchange(worker.conn, msg)
            except (EOFError, OSError):
                worker.proc.join(timeout=1)
                code = worker.proc.exitcode
                raise WorkerCrashedError(
                    f"{payload.name}: a worker process died (exit code {code}) while running "
                    f"{len(items)} item(s): it ran out of memory, crashed in native code, or "
                    "(when started by forkserver or spawn) re-ran a script that lacks an "
                    "`if __name__ == '__main__':` guard"
                ) from None
            healthy = True
            return pickle.loads(data)
        finally:
            self._checkin(worker, healthy)

    @staticmethod
    def _encode(
        payload: NodePayload, items: Sequence[Any], attempts: Sequence[int] | None, with_node: bool
    ) -> bytes:
        node_data = payload.data if with_node else None
        try:
            return pickle.dumps(
                (payload.key, node_data, attempts, list(items)),
                protocol=pickle.HIGHEST_PROTOCOL,
            )
        except Exception as exc:
            for item in items:
                try:
                    pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as item_exc:
                    raise PicklingError(
                        f"{payload.name}: item {item!r:.80} cannot be pickled to send to a "
                        f"worker process ({item_exc}); make prep return plain data"
                    ) from item_exc
            raise PicklingError(f"{payload.name}: cannot pickle work ({exc})") from exc

    def close(self) -> None:
        """Stop idle workers, kill busy ones, and wait for all of them."""
        self._closed = True
        while self._idle:
            worker = self._idle.popleft()
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(b"")  # asks the worker to exit
            worker.proc.join(timeout=2)
            worker.kill()
        for worker in list(self._busy):
            worker.kill()
        self._busy.clear()


def _ray_run_items(node: Any, items: list[Any], attempts: list[int] | None) -> bytes:
    return portable_outcomes(run_items(node, items, attempts), node.name)


class RayExecutor:
    """Runs chunks as Ray tasks; starts a local Ray cluster when none is running."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        ray: Any = require("ray", "executor='ray'")
        self._ray = ray
        if not ray.is_initialized():
            ray.init(
                address=address,
                num_cpus=None if address else (num_cpus or cpu_count()),
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
                runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}},
            )
        self.size = int(ray.available_resources().get("CPU", 1)) or 1
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_run_items)
        self._refs: dict[bytes, Any] = {}
        self._pending: set[Any] = set()

    async def run(
        self, payload: NodePayload, items: Sequence[Any], attempts: Sequence[int] | None
    ) -> list[Outcome]:
        ref = self._refs.get(payload.key)
        if ref is None:
            ref = self._refs[payload.key] = self._ray.put(pickle.loads(payload.data))
        task = self._remote.remote(ref, list(items), None if attempts is None else list(attempts))
        self._pending.add(task)
        try:
            data = await task
        except asyncio.CancelledError:
            self._ray.cancel(task, force=True)
            raise
        except self._ray.exceptions.WorkerCrashedError as exc:
            raise WorkerCrashedError(f"{payload.name}: a Ray worker died: {exc}") from None
        finally:
            self._pending.discard(task)
        return pickle.loads(data)

    def close(self) -> None:
        """Cancel this run's unfinished Ray tasks; the cluster itself stays up for reuse."""
        for task in list(self._pending):
            self._ray.cancel(task, force=True)
        self._pending.clear()
        self._refs.clear()


def thread_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flowkit")
