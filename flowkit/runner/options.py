"""Runner options checked before any work: limits, OpenTelemetry export, timeouts, the run's
budget, and names in them that match no node of the flow."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flowkit.errors import ConfigError
from flowkit.limits import Limit, check_limit
from flowkit.node import check_timeout


def checked_timeouts(timeouts: Mapping[str, float] | None) -> dict[str, float]:
    """``Runner(timeouts=...)``: node names to seconds, each a positive number."""
    out = {}
    for name, value in (timeouts or {}).items():
        out[name] = check_timeout(value, f"Runner timeouts[{name!r}]") or 0.0
    return out


def checked_budget(budget: Limit | None) -> Limit | None:
    """``Runner(budget=...)``: a ``Limit`` with a budget (and nothing else), or None."""
    if budget is None:
        return None
    if not isinstance(budget, Limit) or not budget.budgeted:
        raise ConfigError(
            f"Runner budget must be a flowkit.Limit with max_calls, max_tokens or max_cost, "
            f"got {budget!r}"
        )
    if budget.max_concurrency or budget.rpm or budget.tpm:
        raise ConfigError(
            "Runner budget caps what the whole run spends: give it max_calls, max_tokens or "
            "max_cost only; put concurrency and rates on a named limiter (Runner(limits=...))"
        )
    return budget


def check_names(
    option: str, given: Mapping[str, object], names: Iterable[str], hint: str = ""
) -> None:
    """Refuse ``Runner(option=...)`` keys that name no node of the flow."""
    known = set(names)
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"Runner {option} name unknown node(s) {', '.join(map(repr, unknown))}; nodes in "
            f"this flow: {', '.join(sorted(known))}{hint}"
        )


def checked_limits(
    limits: Mapping[str, int | Limit] | None,
) -> tuple[dict[str, int], dict[str, Limit]]:
    """``Runner(limits=...)`` split into node limits (ints) and named limiters (``Limit``)."""
    node_limits: dict[str, int] = {}
    named: dict[str, Limit] = {}
    for key, value in (limits or {}).items():
        if isinstance(value, Limit):
            named[key] = value
        else:
            node_limits[key] = check_limit(value, f"Runner limits[{key!r}]")
    return node_limits, named


def checked_otel(otel: Any) -> Any:
    """``Runner(otel=...)`` checked: None (off), True, an http(s) URL, or an export object;
    the ``otel`` extra must be installed for any of them."""
    if otel is None or otel is False:
        return None
    if isinstance(otel, str):
        if not otel.startswith(("http://", "https://")):
            raise ConfigError(
                f"Runner otel: expected an OTLP/HTTP endpoint URL such as "
                f"http://localhost:4318, got {otel!r}"
            )
    elif otel is not True and not callable(getattr(otel, "observer", None)):
        raise ConfigError(
            f"Runner otel must be True, an endpoint URL or a flowkit.otel.OtelExport, got "
            f"{type(otel).__name__}"
        )
    from flowkit.extras import require

    purpose = "OpenTelemetry export (Runner otel=...)"
    require("opentelemetry.sdk.trace", purpose, "otel")  # imported now, not in a run's time
    if getattr(otel, "exporter", None) is None:
        require("opentelemetry.exporter.otlp.proto.http.trace_exporter", purpose, "otel")
    return otel
