"""The in-process handle: serve on a background thread or on the running event loop.

``with LLMServer() as server:`` serves from its own thread and loop, so sync and async tests
alike can use it; ``async with LLMServer() as server:`` serves on the caller's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from nodes.llm.testing.app import FakeOpenAI
from nodes.llm.testing.completions import Responder, default_responder
from nodes.llm.testing.config import ServerConfig
from nodes.llm.testing.http import BadRequest, Response, read_request
from nodes.llm.testing.stats import StatsSnapshot


class _StreamConnection:
    """One client connection; ``hold`` watches it so a client that gives up is noticed."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.keep_alive = True
        self.pending = b""

    async def send(self, response: Response) -> None:
        self.writer.write(response.encode(keep_alive=self.keep_alive))
        await self.writer.drain()

    async def hold(self, seconds: float | None) -> bool:
        if seconds is not None and seconds <= 0:
            return True
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        watch = asyncio.ensure_future(self.reader.read(1))
        try:
            done, _ = await asyncio.wait({watch}, timeout=seconds)
        finally:
            if not watch.done():
                watch.cancel()
                await asyncio.wait({watch})  # the reader must be free before the next read
        if not done:
            return True
        if watch.exception() is not None or not watch.result():
            return False
        # A pipelined request began; keep its first byte and finish holding unwatched.
        self.pending += watch.result()
        await (asyncio.sleep(deadline - loop.time()) if deadline else asyncio.Event().wait())
        return True


class LLMServer:
    """Handle on one server: address, live settings and what it recorded."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        responder: Responder = default_responder,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = FakeOpenAI(config or ServerConfig(), responder)
        self.host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """Root URL, for the ``/_stats`` and ``/_control`` endpoints."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"{self.url}/v1"

    @property
    def config(self) -> ServerConfig:
        return self.app.config

    @property
    def stats(self) -> StatsSnapshot:
        return self.app.stats.snapshot()

    def configure(self, **changes: Any) -> ServerConfig:
        """Change ServerConfig fields while running; takes effect for the next request."""
        return self.app.configure(**changes)

    def reset(self) -> None:
        """Clear stats and the rpm window and reseed the random draws."""
        self.app.reset()

    def wait_for(
        self, predicate: Callable[[StatsSnapshot], bool], timeout: float = 10.0
    ) -> StatsSnapshot:
        """Block until ``predicate(stats)`` holds (e.g. ``lambda s: s.in_flight == 0``).

        From an async test that drives the server on its own loop, call it through
        ``asyncio.to_thread`` so the loop keeps running.
        """
        return self.app.stats.wait_for(predicate, timeout)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self._requested_port
        )

    async def stop(self) -> None:
        """Stop listening and drop every open connection, held requests included."""
        if self._server is None:
            return
        self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> LLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def __enter__(self) -> LLMServer:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="flowkit-llm-server", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result()
        except BaseException:
            self._stop_thread()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result()
        self._stop_thread()

    def _stop_thread(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._loop = self._thread = None

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = _StreamConnection(reader, writer)
        try:
            while conn.keep_alive:
                try:
                    request = await read_request(reader, conn.pending)
                except BadRequest as exc:
                    conn.keep_alive = False
                    await conn.send(Response.error(exc.status, str(exc)))
                    break
                if request is None:
                    break
                conn.pending = b""
                conn.keep_alive = request.keep_alive
                await self.app.handle(request, conn)
        except (ConnectionError, asyncio.CancelledError):
            pass  # a client that left, or stop(); asyncio would log a cancelled callback task
        finally:
            self._connections.discard(task)
            writer.close()
