"""The writer process's parent end: groups of encoded rows sent down a pipe that never
blocks the event loop, with a bounded buffer and backpressure."""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from flowkit.errors import StoreError

if TYPE_CHECKING:
    from types import FrameType

    from flowkit.store.db import Store


# Write ends of writer pipes open in this process. A child forked from it (a process worker)
# must not keep one open, or its writer would never see the end of its input.
_OPEN_PIPES: set[int] = set()
# Writers with rows still in this process's memory: flushed to their pipes at exit and on
# SIGTERM or SIGHUP, so what a run handed over reaches the writer process, which commits it.
_LIVE: weakref.WeakSet[StoreWriter] = weakref.WeakSet()
_F_SETPIPE_SZ = 1031  # Linux
PIPE_SIZE = 1 << 20
EXIT_FLUSH_S = 10.0


def _close_pipes_in_child() -> None:
    for fd in _OPEN_PIPES:
        with contextlib.suppress(OSError):
            os.close(fd)
    _OPEN_PIPES.clear()
    _LIVE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_pipes_in_child)


class StoreWriter:
    """Hands groups of encoded rows to a writer process, which commits them to SQLite.

    The process (``writer_process.py``) commits whatever has arrived when its last
    commit ends, so results reach the disk within about one commit however busy the event
    loop is: a writer thread in this process would wait for the loop's GIL instead. Writes to
    its pipe never block the loop: what the pipe cannot take yet waits in a buffer here.

    Like an asyncio transport's flow control (``pause_writing`` / ``resume_writing``), the
    buffer has a high-water mark: above ``HIGH_WATER`` bytes, ``paused`` is true and callers
    should ``await drained()`` (true again below ``LOW_WATER``) before making more results,
    so memory stays bounded and a ``kill -9`` loses at most that much. Rows already handed
    over are flushed to the pipe before this process exits, including on SIGTERM and SIGHUP;
    the writer, in a session of its own, commits them even after this process is gone.
    """

    HIGH_WATER = 4 << 20
    LOW_WATER = 1 << 20

    def __init__(self, store: Store, proc: subprocess.Popen[bytes], fd: int) -> None:
        self.store, self._proc, self._fd = store, proc, fd
        self._loop = asyncio.get_running_loop()
        self._nodes: dict[str, bytes] = {}
        self._chunks: collections.deque[bytes | memoryview] = collections.deque()
        self._buffered = 0
        self._watching = False
        self._waiters: list[asyncio.Future[None]] = []
        self._error: StoreError | None = None
        self._closed = False
        _OPEN_PIPES.add(fd)
        self._loop.add_reader(fd, self._hangup)  # a write pipe turns readable when it breaks

    @classmethod
    async def start(cls, store: Store, run_id: str, lock_fd: int | None = None) -> StoreWriter:
        script = Path(__file__).with_name("writer_process.py")
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(script), str(store.path), run_id],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=() if lock_fd is None else (lock_fd,),
            start_new_session=True,  # Ctrl-C stops the run, not the commit of its results
        )
        assert proc.stdin is not None
        fd = os.dup(proc.stdin.fileno())  # ours to close; the Popen's copy is closed now
        proc.stdin.close()
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
        writer = cls(store, proc, fd)
        _LIVE.add(writer)
        _install_signal_flush()
        return writer

    # -- handing rows over ----------------------------------------------------------------

    def put(self, node: str, ok: bool, rows: bytes, *, blob: bool = False) -> None:
        """Send ``rows``, a JSON array of ``[item_key, item_index, value]`` for ``node``, or
        with ``blob`` of ``[item_key, item_index, file name, size]`` for results stored as
        files (``flowkit.store.blobs``)."""
        if self._error is not None:
            raise self._error
        if self._closed:
            raise StoreError(f"writing to {self.store.path} failed: the writer is closed")
        name = self._nodes.get(node)
        if name is None:
            name = self._nodes[node] = json.dumps(node).encode()
        head = b"%d\t%s\t" % (ok + 2 * blob, name)
        if len(rows) < 1 << 16:
            self._chunks.append(head + rows + b"\n")
        else:  # a large group travels as it is, not copied into one line
            self._chunks.extend((head, rows, b"\n"))
        self._buffered += len(head) + len(rows) + 1
        self._pump()

    @property
    def paused(self) -> bool:
        """Whether more than ``HIGH_WATER`` bytes wait in this process for the pipe."""
        return self._buffered > self.HIGH_WATER

    @property
    def buffered(self) -> int:
        """Bytes handed over that the pipe has not taken yet."""
        return self._buffered

    async def drained(self) -> None:
        """Wait until at most ``LOW_WATER`` bytes wait here (or the writer failed)."""
        while self._buffered > self.LOW_WATER and self._error is None:
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter
        if self._error is not None:
            raise self._error

    def _pump(self) -> None:
        """Write what the pipe takes now; watch for room when something is left."""
        try:
            self._write_some()
        except BlockingIOError:
            pass
        except OSError:  # the writer closed its end: it failed
            self._fail()
            return
        if self._chunks and not self._watching:
            self._loop.add_writer(self._fd, self._pump)
            self._watching = True
        elif not self._chunks and self._watching:
            self._loop.remove_writer(self._fd)
            self._watching = False
        if self._buffered <= self.LOW_WATER or self._closed:
            self._wake()

    def _write_some(self) -> None:
        global _busy
        _busy += 1  # a signal arriving now waits until the buffer matches what was sent
        try:
            chunks = self._chunks
            while chunks:
                views = [chunks[i] for i in range(min(len(chunks), 64))]
                sent = os.writev(self._fd, views)
                self._buffered -= sent
                while sent:
                    first = chunks[0]
                    if sent >= len(first):
                        sent -= len(first)
                        chunks.popleft()
                    else:
                        chunks[0] = memoryview(first)[sent:]
                        return  # the pipe is full
        finally:
            _busy -= 1
            if _deferred and not _busy:
                _flush_and_die(_deferred[0], None)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _hangup(self) -> None:
        self._fail()

    def _fail(self) -> None:
        self._failure()
        self._unwatch()
        self._wake()

    def _unwatch(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._fd)
        if self._watching:
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._fd)
            self._watching = False

    # -- closing ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Wait until everything sent is committed and the writer has exited."""
        self._closed = True
        while self._chunks and self._error is None:  # woken each time the pipe takes some
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter
        self._unwatch()
        self._close_fd()
        while self._proc.poll() is None:
            await asyncio.sleep(0.002)
        if self._error is not None:
            raise self._error
        if self._proc.returncode:
            raise self._failure()

    def _close_fd(self) -> None:
        _LIVE.discard(self)
        if self._fd >= 0:
            _OPEN_PIPES.discard(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def flush_now(self, timeout: float) -> None:
        """Push what is buffered into the pipe, blocking up to ``timeout`` seconds, then close
        it: for exits and signals, when the event loop will not run again."""
        deadline = time.monotonic() + timeout
        while self._chunks and self._fd >= 0:
            try:
                self._write_some()
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                poller = select.poll()
                poller.register(self._fd, select.POLLOUT)
                poller.poll(left * 1000)
            except OSError:
                break
        self._close_fd()

    def _failure(self) -> StoreError:
        """The error for a writer that stopped taking rows, with what it said."""
        if self._error is not None:
            return self._error
        try:
            code: int | None = self._proc.wait(timeout=5)  # it closed its end: it is exiting
        except subprocess.TimeoutExpired:
            code = None
        err = b""
        if code is not None and self._proc.stderr is not None:
            err = self._proc.stderr.read()
        detail = err.decode(errors="replace").strip() or f"writer process exit code {code}"
        self._error = StoreError(f"writing to {self.store.path} failed: {detail}")
        return self._error


def flush_all(timeout: float = EXIT_FLUSH_S) -> None:
    """Push every live writer's buffered rows into its pipe (at exit, on a signal)."""
    deadline = time.monotonic() + timeout
    for writer in list(_LIVE):
        writer.flush_now(max(0.0, deadline - time.monotonic()))


atexit.register(flush_all)

_installed = False
_busy = 0  # writes in progress: a signal's flush must not run in the middle of one
_deferred: list[int] = []


def _install_signal_flush() -> None:
    """On SIGTERM and SIGHUP (when nothing else handles them), flush, then die as the
    signal would have made this process die."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _flush_and_die)


def _flush_and_die(signum: int, frame: FrameType | None) -> None:
    if _busy:
        _deferred.append(signum)  # finished by the write in progress
        return
    flush_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
