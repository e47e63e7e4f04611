"""What an OpenAI-style provider says about its rate limits, read from its response headers.

``x-ratelimit-limit-requests`` / ``-tokens`` (per minute), ``x-ratelimit-remaining-*`` and
``x-ratelimit-reset-*`` (durations such as ``1s``, ``6m0s``, ``120ms``) become
``flowkit.Quota`` values; ``retry-after-ms`` / ``retry-after`` the seconds a 429 asks to
wait. ``tell`` hands them to the run's limiter, which learns from them when its limit has
``"auto"`` parts (``flowkit.Limit(rpm="auto")``) and ignores them otherwise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Protocol

from flowkit.limits import Quota

PERIOD_S = 60.0
"""OpenAI states its request and token limits per minute."""
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class Limiter(Protocol):
    """What ``tell`` needs of a limiter (``flowkit.runner.current.LimiterHandle``)."""

    def answered(
        self, requests: Quota | None = None, tokens: Quota | None = None, *, used: float = 0.0
    ) -> None: ...

    def refused(
        self,
        retry_after_s: float | None = None,
        *,
        requests: Quota | None = None,
        tokens: Quota | None = None,
    ) -> None: ...

    def timed_out(self) -> None: ...


def quotas(headers: Mapping[str, str]) -> tuple[Quota | None, Quota | None]:
    """The request and token quotas the headers state (None for one they do not)."""
    return _quota(headers, "requests"), _quota(headers, "tokens")


def _quota(headers: Mapping[str, str], unit: str) -> Quota | None:
    limit = _number(headers.get(f"x-ratelimit-limit-{unit}"))
    remaining = _number(headers.get(f"x-ratelimit-remaining-{unit}"))
    reset = duration_s(headers.get(f"x-ratelimit-reset-{unit}"))
    if limit is None and remaining is None and reset is None:
        return None
    return Quota(limit=limit, remaining=remaining, reset_s=reset, period_s=PERIOD_S)


def duration_s(text: str | None) -> float | None:
    """Seconds in a duration such as ``6m0s``, ``1.5s``, ``120ms`` or a bare ``2``."""
    if not text:
        return None
    text = text.strip()
    bare = _number(text)
    if bare is not None:
        return bare
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (a number); None when absent."""
    for header, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        seconds = _number(headers.get(header))
        if seconds is not None:
            return seconds / scale
    return None


def tell(
    limiter: Limiter,
    status: int | None,
    headers: Mapping[str, str],
    *,
    used: float = 0.0,
) -> None:
    """Tell ``limiter`` how one call ended: answered (2xx, ``used`` tokens), refused for
    the provider's rate limits (429, with its Retry-After) or timed out (``status`` None);
    other endings tell nothing. For code that calls an OpenAI-compatible API itself, e.g.
    a sync SDK on worker threads; ``nodes.llm``'s client does this for every call."""
    requests, tokens = quotas(headers)
    if status is None:
        limiter.timed_out()
    elif status == 429:
        limiter.refused(retry_after(headers), requests=requests, tokens=tokens)
    elif 200 <= status < 300:
        limiter.answered(requests, tokens, used=used)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 and math.isfinite(value) else None
