"""What the test server answers: routes, injected faults, rate limits and latency.

Nothing here touches sockets; the server hands each request over with a ``Connection``.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Any, Protocol

from nodes.llm.testing.completions import (
    Responder,
    chat_completion,
    chat_completion_stream,
    default_responder,
    malformed_completion,
    usage,
)
from nodes.llm.testing.config import Fault, ServerConfig
from nodes.llm.testing.http import Request, Response
from nodes.llm.testing.stats import StatsRecorder

FAULT_HEADER = "x-flowkit-fault"


class Connection(Protocol):
    async def send(self, response: Response) -> None: ...

    async def hold(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: forever); False as soon as the client disconnects."""
        ...


class FakeOpenAI:
    """The server's behaviour. ``configure``, ``reset`` and ``stats`` work from any thread."""

    def __init__(self, config: ServerConfig, responder: Responder = default_responder) -> None:
        self._lock = threading.Lock()
        self._responder = responder
        self._config = config
        self._next_faults = deque(config.next_faults)
        self._admitted = 0
        self._window: deque[float] = deque()  # when each request in the rpm window came
        self._token_window: deque[tuple[float, int]] = deque()  # (when, tokens)
        self._fault_rng = random.Random(f"fault:{config.seed}")
        self._latency_rng = random.Random(f"latency:{config.seed}")
        self.stats = StatsRecorder(config.max_records)

    @property
    def config(self) -> ServerConfig:
        """The settings in force, with ``next_faults`` showing the faults not yet used."""
        with self._lock:
            return self._config.model_copy(update={"next_faults": tuple(self._next_faults)})

    def configure(self, **changes: Any) -> ServerConfig:
        """Change settings (ServerConfig fields); a new ``seed`` restarts the random draws."""
        with self._lock:
            current = self._config.model_dump() | {"next_faults": tuple(self._next_faults)}
            config = ServerConfig.model_validate({**current, **changes})
            self._config = config
            self._next_faults = deque(config.next_faults)
            if "seed" in changes:
                self._reseed()
        self.stats.resize(config.max_records)
        return config

    def reset(self) -> None:
        """Clear stats and the rpm window and reseed the random draws; settings stay."""
        with self._lock:
            self._window.clear()
            self._token_window.clear()
            self._reseed()
        self.stats.reset()

    async def handle(self, request: Request, conn: Connection) -> None:
        route = (request.method, request.path)
        if route == ("GET", "/_stats"):
            await conn.send(Response.json(200, self.stats.snapshot().model_dump(mode="json")))
            return
        if route == ("POST", "/_control"):
            await conn.send(self._control(request.body))
            return
        body = _decode_body(request.body)
        record = self.stats.start(request.method, request.path, request.headers, body)
        response, reason = None, None
        try:
            response, reason = await self._api(request, body, record.index, conn)
        finally:
            # Before sending, so a client that has its answer also sees it recorded.
            self.stats.finish(record, response.status if response else None, reason)
        if response is not None:
            await conn.send(response)

    async def _api(
        self, request: Request, body: Any, index: int, conn: Connection
    ) -> tuple[Response | None, str | None]:
        route = (request.method, request.path)
        if route == ("GET", "/v1/models"):
            return Response.json(200, self._models()), None
        if route != ("POST", "/v1/chat/completions"):
            return Response.error(404, f"Invalid URL ({request.method} {request.path})"), None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return Response.error(400, "expected a JSON object with a 'messages' list"), None
        header = request.headers.get(FAULT_HEADER)
        try:
            forced = Fault(header) if header is not None else None
        except ValueError:
            choices = ", ".join(Fault)
            return Response.error(400, f"{FAULT_HEADER} must be one of: {choices}"), None
        tokens = self._tokens(body) if self._config.tpm is not None else 0
        with self._lock:
            config, now = self._config, time.monotonic()
            limited = self._admit(config, now, tokens)
            headers = self._rate_headers(config, now)
            if limited:
                reason, retry_after = limited
                refusal = _rate_limited(f"server limit reached: {reason}", retry_after, headers)
                return refusal, reason
            fault = forced or self._next_fault(config)
            latency = config.draw_latency_s(self._latency_rng)
        try:
            response = await self._answer(config, body, fault, latency, index, conn)
        finally:
            with self._lock:
                self._admitted -= 1
        if response is not None and response.status == 200 and headers:
            response = replace(response, headers={**response.headers, **headers})
        return response, fault.value if fault else None

    async def _answer(
        self,
        config: ServerConfig,
        body: dict[str, Any],
        fault: Fault | None,
        latency: float,
        index: int,
        conn: Connection,
    ) -> Response | None:
        if fault is Fault.RATE_LIMIT:
            return _rate_limited("injected rate limit", config.retry_after_s)
        if not await conn.hold(config.stall_s if fault is Fault.STALL else latency):
            return None
        if fault is Fault.SERVER_ERROR:
            return Response.error(500, "injected server error", error_type="server_error")
        completion_id = f"chatcmpl-flowkit{index:08d}"
        if fault is Fault.MALFORMED:
            return Response(200, malformed_completion(id=completion_id))
        try:
            text = self._responder(body)
        except Exception as exc:
            return Response.error(500, f"responder failed: {exc!r}", error_type="server_error")
        created = int(time.time())
        if body.get("stream"):
            stream = chat_completion_stream(body, text, id=completion_id, created=created)
            return Response(200, stream, content_type="text/event-stream")
        return Response.json(200, chat_completion(body, text, id=completion_id, created=created))

    def _admit(self, config: ServerConfig, now: float, tokens: int) -> tuple[str, float] | None:
        """Take a slot under the server-side limits, or say which limit refused and how long
        until it has room (lock held)."""
        if config.max_in_flight is not None and self._admitted >= config.max_in_flight:
            return "max_in_flight", config.retry_after_s
        self._slide(config, now)
        window = config.rpm_window_s
        if config.rpm is not None and len(self._window) >= config.rpm:
            # Room once all but rpm - 1 of the requests in the window have left it.
            return "rpm", self._window[len(self._window) - config.rpm] + window - now
        if config.tpm is not None:
            spent = sum(n for _, n in self._token_window)
            if spent + tokens > config.tpm:
                return "tpm", self._tokens_free_at(config.tpm - tokens, spent) + window - now
        if config.rpm is not None:
            self._window.append(now)
        if config.tpm is not None:
            self._token_window.append((now, tokens))
        self._admitted += 1
        return None

    def _slide(self, config: ServerConfig, now: float) -> None:
        """Drop what left the rpm and tpm windows (lock held)."""
        start = now - config.rpm_window_s
        while self._window and self._window[0] <= start:
            self._window.popleft()
        while self._token_window and self._token_window[0][0] <= start:
            self._token_window.popleft()

    def _tokens_free_at(self, allowed: int, spent: int) -> float:
        """When the oldest entries leaving the token window bring it to ``allowed``."""
        for at, n in self._token_window:
            spent -= n
            if spent <= allowed:
                return at
        return self._token_window[-1][0] if self._token_window else 0.0

    def _rate_headers(self, config: ServerConfig, now: float) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the rpm and tpm limits (lock held)."""
        if not config.rate_headers:
            return {}
        headers: dict[str, str] = {}
        window = config.rpm_window_s
        for unit, limit, used, last in (
            ("requests", config.rpm, len(self._window), self._window[-1] if self._window else None),
            (
                "tokens",
                config.tpm,
                sum(n for _, n in self._token_window),
                self._token_window[-1][0] if self._token_window else None,
            ),
        ):
            if limit is None:
                continue
            reset = max(0.0, last + window - now) if last is not None else 0.0
            headers[f"x-ratelimit-limit-{unit}"] = str(round(limit * 60 / window))
            headers[f"x-ratelimit-remaining-{unit}"] = str(max(0, limit - used))
            headers[f"x-ratelimit-reset-{unit}"] = _duration(reset)
        return headers

    def _tokens(self, body: Any) -> int:
        """What a request costs against ``tpm``: its prompt and the reply it will get."""
        try:
            return usage(body, self._responder(body))["total_tokens"]
        except Exception:
            return 0

    def _next_fault(self, config: ServerConfig) -> Fault | None:
        """The next queued fault, else a random draw (lock held)."""
        if self._next_faults:
            return self._next_faults.popleft()
        return config.draw_fault(self._fault_rng)

    def _reseed(self) -> None:
        self._fault_rng.seed(f"fault:{self._config.seed}")
        self._latency_rng.seed(f"latency:{self._config.seed}")

    def _models(self) -> dict[str, Any]:
        models = [
            {"id": m, "object": "model", "created": 0, "owned_by": "flowkit"}
            for m in self.config.models
        ]
        return {"object": "list", "data": models}

    def _control(self, raw: bytes) -> Response:
        try:
            changes = json.loads(raw or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object of ServerConfig fields")
            reset = bool(changes.pop("reset", False))
            config = self.configure(**changes)
        except ValueError as exc:
            return Response.error(400, str(exc))
        if reset:
            self.reset()
        return Response.json(200, {"config": config.model_dump(mode="json")})


def _rate_limited(
    message: str, retry_after_s: float, rate_headers: dict[str, str] | None = None
) -> Response:
    headers = {
        "Retry-After": str(math.ceil(retry_after_s)),
        "retry-after-ms": str(math.ceil(retry_after_s * 1000)),
        **(rate_headers or {}),
    }
    return Response.error(
        429, message, error_type="requests", code="rate_limit_exceeded", headers=headers
    )


def _duration(seconds: float) -> str:
    """A duration as OpenAI writes it: ``120ms``, ``8.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.3g}s"


def _decode_body(raw: bytes) -> Any:
    """The request body as JSON when it parses, else as text (kept for the records)."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")
