"""The writer process's parent end: groups of encoded rows sent down a pipe that never
blocks the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flowkit.errors import StoreError

if TYPE_CHECKING:
    from flowkit.store.db import Store


# Write ends of writer pipes open in this process. A child forked from it (a process worker)
# must not keep one open, or its writer would never see the end of its input.
_OPEN_PIPES: set[int] = set()


def _close_pipes_in_child() -> None:
    for fd in _OPEN_PIPES:
        with contextlib.suppress(OSError):
            os.close(fd)
    _OPEN_PIPES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_pipes_in_child)


class _Pipe(asyncio.BaseProtocol):
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = asyncio.get_running_loop().create_future()
        _OPEN_PIPES.add(fd)

    def connection_lost(self, exc: Exception | None) -> None:
        _OPEN_PIPES.discard(self.fd)  # the transport closes the fd right after this
        if not self.closed.done():
            self.closed.set_result(None)


class StoreWriter:
    """Hands groups of encoded rows to a writer process, which commits them to SQLite.

    The process (``writer_process.py``) commits whatever has arrived when its last
    commit ends, so results reach the disk within about one commit however busy the event
    loop is: a writer thread in this process would wait for the loop's GIL instead. Writes to
    its pipe never block the loop. If this process dies, the writer still commits every
    group it was sent.
    """

    def __init__(
        self,
        store: Store,
        proc: subprocess.Popen[bytes],
        transport: asyncio.WriteTransport,
        pipe: _Pipe,
    ) -> None:
        self.store, self._proc, self._transport, self._pipe = store, proc, transport, pipe
        self._nodes: dict[str, bytes] = {}

    @classmethod
    async def start(cls, store: Store, run_id: str) -> StoreWriter:
        script = Path(__file__).with_name("writer_process.py")
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(script), str(store.path), run_id],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C stops the run, not the commit of its results
        )
        assert proc.stdin is not None
        loop = asyncio.get_running_loop()
        fd = proc.stdin.fileno()
        transport, pipe = await loop.connect_write_pipe(lambda: _Pipe(fd), proc.stdin)
        return cls(store, proc, transport, pipe)

    def put(self, node: str, ok: bool, rows: bytes) -> None:
        """Send ``rows``, a JSON array of ``[item_key, item_index, value]`` for ``node``."""
        if self._transport.is_closing():
            raise self._failure()
        name = self._nodes.get(node)
        if name is None:
            name = self._nodes[node] = json.dumps(node).encode()
        self._transport.write(b"%d\t%s\t%s\n" % (ok, name, rows))

    async def close(self) -> None:
        """Wait until everything sent is committed and the writer has exited."""
        self._transport.close()  # sends what is still buffered, then end of input
        await self._pipe.closed
        while self._proc.poll() is None:
            await asyncio.sleep(0.002)
        if self._proc.returncode:
            raise self._failure()

    def _failure(self) -> StoreError:
        """The error for a writer that stopped taking rows, with what it said."""
        try:
            code: int | None = self._proc.wait(timeout=5)  # it closed its end: it is exiting
        except subprocess.TimeoutExpired:
            code = None
        err = b""
        if code is not None and self._proc.stderr is not None:
            err = self._proc.stderr.read()
        detail = err.decode(errors="replace").strip() or f"writer process exit code {code}"
        return StoreError(f"writing to {self.store.path} failed: {detail}")
