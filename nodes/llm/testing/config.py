"""Behaviour settings for the local OpenAI-compatible test server."""

from __future__ import annotations

import random
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Fault(StrEnum):
    """A failure the server can answer with instead of a normal completion."""

    RATE_LIMIT = "429"
    SERVER_ERROR = "500"
    STALL = "stall"
    MALFORMED = "malformed"


class ServerConfig(BaseModel):
    """How the server answers chat completions; any field can be changed while it runs.

    Latency, faults and limits apply to ``POST /v1/chat/completions`` only. Faults are
    chosen per request in this order: the ``X-Flowkit-Fault`` header, then ``next_faults``,
    then one seeded random draw against the ``*_rate`` fields.

    ``rpm`` and ``tpm`` are enforced over a sliding window of ``rpm_window_s`` seconds; a
    refusal's Retry-After is the time until the window has room. With ``rate_headers``,
    answers and refusals state them as OpenAI does: ``x-ratelimit-limit-requests`` (the
    per-minute rate the window stands for: ``rpm * 60 / rpm_window_s``),
    ``x-ratelimit-remaining-requests`` (how many more it would admit now) and
    ``x-ratelimit-reset-requests`` (when the window is empty again, e.g. ``8.5s``), and the
    same for ``-tokens``. ``configure(rpm=...)`` while it runs changes the limit for the next
    request; the window keeps what it holds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(
        default=0.0, ge=0, description="fixed latency, or the minimum of a range"
    )
    latency_max_ms: float | None = Field(
        default=None, ge=0, description="draw latency uniformly from latency_ms..latency_max_ms"
    )
    seed: int = Field(default=0, description="seed for the latency and fault draws")
    fail_rate_429: float = Field(
        default=0.0, ge=0, le=1, description="probability of an injected 429"
    )
    fail_rate_500: float = Field(
        default=0.0, ge=0, le=1, description="probability of an injected 500"
    )
    stall_rate: float = Field(
        default=0.0, ge=0, le=1, description="probability of a stalled request"
    )
    malformed_rate: float = Field(
        default=0.0, ge=0, le=1, description="probability of a 200 whose JSON body is cut short"
    )
    next_faults: tuple[Fault, ...] = Field(
        default=(), description="faults for the next requests, one each, in order"
    )
    retry_after_s: float = Field(
        default=1.0, ge=0, description="Retry-After of injected 429s (also sent as retry-after-ms)"
    )
    stall_s: float | None = Field(
        default=None,
        ge=0,
        description="how long a stall lasts before a normal answer; None: until "
        "the client disconnects",
    )
    rpm: int | None = Field(
        default=None,
        ge=1,
        description="admit at most this many requests per sliding window, else 429",
    )
    tpm: int | None = Field(
        default=None,
        ge=1,
        description="admit at most this many tokens (prompt and reply) per sliding window, "
        "else 429",
    )
    rpm_window_s: float = Field(
        default=60.0, gt=0, description="length of the rpm and tpm window in seconds"
    )
    rate_headers: bool = Field(
        default=True,
        description="state the rpm and tpm limits in OpenAI's x-ratelimit-* headers",
    )
    max_in_flight: int | None = Field(
        default=None, ge=1, description="answer 429 while this many requests are being handled"
    )
    models: tuple[str, ...] = Field(
        default=("flowkit-fake",), description="ids listed by /v1/models"
    )
    max_records: int = Field(default=10_000, ge=0, description="most recent requests kept in stats")

    @model_validator(mode="after")
    def _check_ranges(self) -> ServerConfig:
        if self.latency_max_ms is not None and self.latency_max_ms < self.latency_ms:
            raise ValueError("latency_max_ms must be >= latency_ms")
        if self.fail_rate_429 + self.fail_rate_500 + self.stall_rate + self.malformed_rate > 1:
            raise ValueError("fault rates must add up to at most 1")
        return self

    def draw_latency_s(self, rng: random.Random) -> float:
        """Latency for one request in seconds."""
        if self.latency_max_ms is None:
            return self.latency_ms / 1000
        return rng.uniform(self.latency_ms, self.latency_max_ms) / 1000

    def draw_fault(self, rng: random.Random) -> Fault | None:
        """Pick a fault (or none) for one request with a single uniform draw."""
        point = rng.random()
        for fault, rate in (
            (Fault.RATE_LIMIT, self.fail_rate_429),
            (Fault.SERVER_ERROR, self.fail_rate_500),
            (Fault.STALL, self.stall_rate),
            (Fault.MALFORMED, self.malformed_rate),
        ):
            if point < rate:
                return fault
            point -= rate
        return None
