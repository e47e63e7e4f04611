"""Worker processes and their pipe protocol: start one, exchange messages without blocking
the event loop, and the loop a worker runs. Also used by model replicas (``nodes.models``)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import pickle
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from flowkit.executors.base import portable_outcomes, run_items

WORKER_CACHE = 64
"""Nodes a worker keeps, least recently used first out; the parent mirrors the order."""


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
    proc = ctx.Process(target=target, args=(child, *args), daemon=True, name=name)
    proc.start()
    child.close()
    return proc, parent


def worker_main(conn: Connection) -> None:
    """Worker process loop: receive (key, node pickle or None, attempts, items), reply."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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


class Worker:
    """One worker process and the parent's mirror of the nodes it holds."""

    __slots__ = ("conn", "known", "proc")

    def __init__(self, start_method: str | None) -> None:
        self.proc, self.conn = start_worker(context(start_method), worker_main)
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
