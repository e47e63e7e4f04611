"""Just enough HTTP/1.1 over asyncio streams: Content-Length bodies and keep-alive."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


class BadRequest(Exception):
    """The bytes on the connection are not a request ``nodes.llm.testing``'s server can read."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_HEADERS = 100


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    """Header names are lower-cased; a repeated header keeps its last value."""
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode(), headers=headers or {})

    @classmethod
    def error(
        cls,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """An error body in the shape the OpenAI API uses."""
        payload = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        return cls.json(status, payload, headers)

    def encode(self, *, keep_alive: bool) -> bytes:
        reason = HTTPStatus(self.status).phrase
        lines = [
            f"HTTP/1.1 {self.status} {reason}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


async def read_request(reader: asyncio.StreamReader, prefix: bytes = b"") -> Request | None:
    """Read one request; None when the client closed the connection between requests.

    ``prefix`` holds bytes of this request that were already taken off the stream.
    """
    line = prefix + await _readline(reader)
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").split()
    except ValueError:
        raise BadRequest(400, "malformed request line") from None
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest(505, f"unsupported version {version}")
    headers: dict[str, str] = {}
    while (raw := await _readline(reader)) not in (b"\r\n", b"\n"):
        if not raw:
            raise BadRequest(400, "connection closed inside the headers")
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep or len(headers) >= MAX_HEADERS:
            raise BadRequest(400, "malformed or too many headers")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadRequest(411, "chunked request bodies are not supported; send Content-Length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise BadRequest(400, "invalid Content-Length") from None
    if not 0 <= length <= MAX_BODY_BYTES:
        raise BadRequest(413, "request body too large")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise BadRequest(400, "connection closed inside the body") from None
    return Request(method.upper(), target, version, headers, body)


async def _readline(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readline()
    except ValueError:  # longer than the stream's line limit
        raise BadRequest(431, "request line or header too long") from None
