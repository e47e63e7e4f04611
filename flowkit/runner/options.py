"""Runner options checked before any work: timeouts, the run's budget, and names in them
that match no node of the flow."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flowkit.errors import ConfigError
from flowkit.limits import Limit
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


def check_names(option: str, given: Mapping[str, object], names: Iterable[str]) -> None:
    """Refuse ``Runner(option=...)`` keys that name no node of the flow."""
    known = set(names)
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"Runner {option} name unknown node(s) {', '.join(map(repr, unknown))}; nodes in "
            f"this flow: {', '.join(sorted(known))}"
        )
