"""Reading what an OpenAI-style provider says about its rate limits from its headers."""

from __future__ import annotations

import pytest

import flowkit as fk
from nodes.llm.ratelimits import duration_s, quotas, tell


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1.5s", 1.5),
        ("120ms", 0.12),
        ("1h2m3s", 3723.0),
        ("2", 2.0),
        ("soon", None),
        ("1s and more", None),
        ("", None),
        (None, None),
    ],
)
def test_reset_durations_are_read_as_openai_writes_them(
    text: str | None, seconds: float | None
) -> None:
    assert duration_s(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_headers_become_request_and_token_quotas_per_minute() -> None:
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149984",
        "x-ratelimit-reset-tokens": "6ms",
    }
    requests, tokens = quotas(headers)
    assert requests == fk.Quota(limit=60, remaining=59, reset_s=1.0, period_s=60)
    assert tokens == fk.Quota(limit=150_000, remaining=149_984, reset_s=0.006, period_s=60)
    assert requests is not None and requests.rate == 1.0
    assert quotas({"x-ratelimit-limit-requests": "-3"}) == (None, None)


class Recorder:
    """Records what ``tell`` reports, as a limiter handle would take it."""

    def __init__(self) -> None:
        self.heard: list[tuple[object, ...]] = []

    def answered(self, requests=None, tokens=None, *, used=0.0):  # type: ignore[no-untyped-def]
        self.heard.append(("answered", requests, tokens, used))

    def refused(self, retry_after_s=None, *, requests=None, tokens=None):  # type: ignore[no-untyped-def]
        self.heard.append(("refused", retry_after_s, requests))

    def timed_out(self):  # type: ignore[no-untyped-def]
        self.heard.append(("timed_out",))


def test_tell_reports_answers_refusals_and_timeouts() -> None:
    limiter = Recorder()
    stated = {"x-ratelimit-limit-requests": "600"}
    tell(limiter, 200, stated, used=12)
    tell(limiter, 429, {**stated, "retry-after-ms": "250"})
    tell(limiter, None, {})
    tell(limiter, 500, stated)  # a server error says nothing about rate limits
    quota = fk.Quota(limit=600, period_s=60)
    assert limiter.heard == [
        ("answered", quota, None, 12),
        ("refused", 0.25, quota),
        ("timed_out",),
    ]
