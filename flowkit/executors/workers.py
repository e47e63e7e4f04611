"""Worker processes: start one, exchange messages with it without blocking the event loop,
and keep a pool of them. Used by the process executor and by model replicas
(``nodes.models``).

A worker never outlives the process that started it, whatever signal ends that process: it
holds no other worker's end of a pipe (so it sees end-of-file when its parent goes), and a
watchdog thread in it exits the moment it is orphaned, even while exec keeps it busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from flowkit.executors.base import portable_outcomes, run_items
from flowkit.limits import Slots

WORKER_CACHE = 64
"""Nodes a worker keeps, least recently used first out; the parent mirrors the order."""
ORPHAN_CHECK = 0.2
"""Seconds between a worker's checks that its parent is still alive, where it cannot be told
at once (no pidfd)."""

# Parents' ends of worker pipes open in this process. A worker forked from it must not keep
# one open: the worker at the other end would never see end-of-file if this process died.
_PARENT_ENDS: set[int] = set()


def _close_parent_ends() -> None:
    for fd in _PARENT_ENDS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _PARENT_ENDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_parent_ends)


def remember(cache: OrderedDict[bytes, Any], key: bytes, value: Any) -> None:
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
    _PARENT_ENDS.add(parent.fileno())
    proc = ctx.Process(
        target=_entry, args=(os.getpid(), target, child, *args), daemon=True, name=name
    )
    try:
        proc.start()
    except BaseException:
        release(parent)
        raise
    finally:
        child.close()
    return proc, parent


def release(conn: Connection) -> None:
    """Close a parent's end of a worker pipe."""
    with contextlib.suppress(OSError, ValueError):
        _PARENT_ENDS.discard(conn.fileno())
    conn.close()


def _entry(parent_pid: int, target: Callable[..., None], conn: Connection, *args: Any) -> None:
    """Worker process entry: ignore Ctrl-C (the parent decides), exit when the process that
    started it is gone (with forkserver, that process is not this one's parent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch, args=(parent_pid,), daemon=True).start()
    target(conn, *args)


def _watch(pid: int) -> None:
    """Exit this process as soon as process ``pid`` ends (a pidfd turns readable then)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (not Linux 5.3+): poll for being orphaned
        parent = os.getppid()
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK)
        os._exit(1)
    select.select([fd], [], [])
    os._exit(1)


def worker_main(conn: Connection) -> None:
    """Process executor worker loop: receive (key, node pickle or None, attempts, items),
    reply with their outcomes."""
    cache: OrderedDict[bytes, Any] = OrderedDict()
    while True:
        msg = next_message(conn)
        if msg is None:
            return
        key, node_data, attempts, items = pickle.loads(msg)
        remember(cache, key, None if node_data is None else pickle.loads(node_data))
        node = cache[key]
        conn.send_bytes(portable_outcomes(run_items(node, items, attempts), node.name))


def context(start_method: str | None) -> Any:
    """Fork while the process has a single thread (fast, no main-module guard needed);
    otherwise forkserver, since forking a threaded process can deadlock the child."""
    if start_method is None:
        if sys.platform != "linux":
            start_method = "spawn"
        else:
            start_method = "fork" if threading.active_count() == 1 else "forkserver"
    return mp.get_context(start_method)


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


class Worker:
    """One worker process, the parent's end of its pipe, and the parent's mirror of the
    nodes it holds."""

    __slots__ = ("conn", "known", "proc", "slot")

    def __init__(self, proc: Any, conn: Connection, slot: int) -> None:
        self.proc, self.conn, self.slot = proc, conn, slot
        self.known: OrderedDict[bytes, bool] = OrderedDict()  # mirrors the worker's cache

    def stop(self, timeout: float) -> None:
        """Ask the worker to exit; kill it if it has not within ``timeout`` seconds."""
        with contextlib.suppress(OSError):
            self.conn.send_bytes(b"")
        self.proc.join(timeout)
        self.kill()

    def kill(self) -> None:
        """Kill the process and close the pipe."""
        self.end()
        release(self.conn)

    def end(self) -> None:
        """Kill the process; the pipe stays open, so a call waiting on it sees it end."""
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)


class WorkerPool:
    """At most ``size`` worker processes, started by ``spawn(slot)`` when work needs them.

    ``checkout`` gives an idle worker (starting one while fewer than ``size`` run, else
    waiting for one to be given back); ``checkin`` takes it back, or kills it when it is not
    ``healthy`` (it died, or was cancelled mid-call: its state is unknown). ``close`` stops
    idle workers and kills busy ones.
    """

    def __init__(self, size: int, spawn: Callable[[int], Worker]) -> None:
        self.size = size
        self._spawn = spawn
        self._idle: deque[Worker] = deque()
        self._busy: set[Worker] = set()
        self._free_slots = deque(range(size))
        self._slots = Slots(size)
        self.closed = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers, in slot order."""
        workers = sorted((*self._idle, *self._busy), key=lambda w: w.slot)
        return [w.proc.pid for w in workers if w.proc.pid is not None]

    async def checkout(self) -> Worker:
        await self._slots.acquire()
        try:
            if self.closed:
                raise RuntimeError("the worker pool is closed")
            if self._idle:
                worker = self._idle.popleft()
            else:
                slot = self._free_slots.popleft()
                try:
                    worker = self._spawn(slot)
                except BaseException:
                    self._free_slots.appendleft(slot)
                    raise
        except BaseException:
            self._slots.release()
            raise
        self._busy.add(worker)
        return worker

    def checkin(self, worker: Worker, healthy: bool) -> None:
        self._busy.discard(worker)
        if healthy and not self.closed:
            self._idle.append(worker)
        else:
            worker.kill()
            self._free_slots.append(worker.slot)
        self._slots.release()

    def close(self, timeout: float = 2.0) -> None:
        """Stop idle workers (killed after ``timeout`` s) and kill busy ones; wait for all.
        A call still waiting on a killed worker fails; its ``checkin`` closes the pipe."""
        self.closed = True
        while self._idle:
            self._idle.popleft().stop(timeout)
        for worker in list(self._busy):
            worker.end()
