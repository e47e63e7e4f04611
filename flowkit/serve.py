"""A small local web server for one live page: the page, and its updates as server-sent events.

``PageServer`` runs the standard library's threading HTTP server on a daemon thread, so
serving never runs on (or waits for) the event loop of the run it shows. The run hands it
HTML (``publish``); each open page receives the newest version at once, and a slow or
vanished browser costs the run nothing: a stream that falls behind skips to the newest
version. ``finish`` hands every open page its last document and stops the server.

It binds to 127.0.0.1 unless told otherwise, and answers only requests addressed to the
host it was bound to (a page elsewhere cannot read it through DNS rebinding).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from flowkit.errors import ConfigError

DEFAULT_PORT = 8765
"""The port ``live=True`` (``flowkit run --live``) tries first; a free one if it is taken."""
LOOPBACK = "127.0.0.1"
KEEPALIVE = 10.0
"""Seconds between comments on an idle event stream (they keep proxies and browsers open)."""


class Address(NamedTuple):
    """Where to listen; ``fallback``: on any free port if ``port`` is taken."""

    host: str
    port: int
    fallback: bool = False


def live_address(value: object) -> Address | None:
    """``Runner(live=...)`` as an ``Address``: True (127.0.0.1, ``DEFAULT_PORT`` or else a
    free port), a port (0: any free one), or "HOST:PORT"; None or False: no live view."""
    if value is None or value is False:
        return None
    if value is True:
        return Address(LOOPBACK, DEFAULT_PORT, fallback=True)
    if isinstance(value, int) and 0 <= value <= 65535:
        return Address(LOOPBACK, value)
    if isinstance(value, str):
        host, colon, port = value.rpartition(":")
        host = host.strip("[]") if colon else LOOPBACK
        if port.isdigit() and int(port) <= 65535 and (host or not colon):
            return Address(host, int(port))
    raise ConfigError(
        f"Runner live must be True, a port number (0-65535) or 'HOST:PORT', got {value!r}"
    )


class PageServer:
    """Serves ``GET /`` (the page: ``page(body)`` around the newest body published) and
    ``GET /events`` (a stream of bodies as they are published, then the final document)."""

    def __init__(
        self, host: str, port: int, page: Callable[[str], str], *, fallback: bool = False
    ) -> None:
        from http.server import ThreadingHTTPServer

        self._page = page
        self._cond = threading.Condition()
        self._body = ""
        self._version = 0
        self._final: str | None = None
        self._streams = 0
        self.requested = threading.Event()
        """Set when a page asked for the newest body: the run publishes only while wanted."""
        handler = _handler(self)
        try:
            self._httpd = ThreadingHTTPServer((host, port), handler)
        except OSError:
            if not fallback:
                raise
            self._httpd = ThreadingHTTPServer((host, 0), handler)
        self._httpd.daemon_threads = True
        self.host = host
        self.port = int(self._httpd.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self._hosts = {f"{shown}:{self.port}", f"localhost:{self.port}"}
        if host in (LOOPBACK, "localhost"):
            self._hosts |= {f"127.0.0.1:{self.port}", f"[::1]:{self.port}"}
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="flowkit-live",
            daemon=True,
        )
        self._thread.start()

    @property
    def streams(self) -> int:
        """Pages connected to the event stream now."""
        return self._streams

    @property
    def wanted(self) -> bool:
        """Whether a page is open or asked for one since the last publish."""
        return self._streams > 0 or self.requested.is_set()

    def publish(self, body: str) -> None:
        """Make ``body`` the newest version: served by ``GET /`` and sent to every stream."""
        with self._cond:
            self._body = body
            self._version += 1
            self.requested.clear()
            self._cond.notify_all()

    def finish(self, document: str, linger: float = 2.0) -> None:
        """Send every open page ``document`` (a whole page that replaces it), wait up to
        ``linger`` seconds for them to have it, then stop serving."""
        deadline = time.monotonic() + linger
        with self._cond:
            self._final = document
            self._cond.notify_all()
            while self._streams and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
        self.close()

    def close(self) -> None:
        """Stop serving and free the port (open streams end)."""
        with self._cond:
            if self._final is None:
                self._final = ""
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(1.0)

    # -- what the handler threads call -------------------------------------------------------

    def allowed(self, host: str | None) -> bool:
        return self.host in ("0.0.0.0", "::", "") or (host or "") in self._hosts

    def body(self, wait: float) -> str:
        """The newest body, waiting up to ``wait`` seconds for a first one."""
        self.requested.set()
        with self._cond:
            self._cond.wait_for(lambda: self._version > 0 or self._final is not None, wait)
            return self._final or self._page(self._body)

    def _changed(self, seen: int) -> bool:
        return self._version > seen or self._final is not None

    def stream(self, send: Callable[[str, str], None], comment: Callable[[], None]) -> None:
        """Send each new body (event "update") as it comes, then the final document
        (event "final"); returns when the run has finished or the page went away."""
        seen = 0
        with self._cond:
            self._streams += 1
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(functools.partial(self._changed, seen), KEEPALIVE)
                    final, version, body = self._final, self._version, self._body
                if final is not None:
                    if final:
                        send("final", final)
                    return
                if version > seen:
                    seen = version
                    send("update", body)
                else:
                    comment()
        finally:
            with self._cond:
                self._streams -= 1
                self._cond.notify_all()


def _handler(server: PageServer) -> Any:
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if not server.allowed(self.headers.get("Host")):
                self._plain(403, "this live view answers only on its own address\n")
            elif self.path in ("/", "/index.html"):
                data = server.body(wait=2.0).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif self.path == "/events":
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    self.wfile.write(b"retry: 1000\n\n")
                    self.wfile.flush()
                    server.stream(self._event, self._comment)
                except (BrokenPipeError, ConnectionResetError):
                    return
            else:
                self._plain(404, "not found: the live view is at /\n")

        def _event(self, name: str, data: str) -> None:
            lines = "".join(f"data: {line}\n" for line in data.split("\n"))
            self.wfile.write(f"event: {name}\n{lines}\n".encode())
            self.wfile.flush()

        def _comment(self) -> None:
            self.wfile.write(b": still running\n\n")
            self.wfile.flush()

        def _plain(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the run's terminal is for the run."""

    return Handler
