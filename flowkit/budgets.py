"""Budgets with a hard stop: calls, tokens and cost against a ``Limit``'s (or a run's) caps.

A ``Budget`` counts what calls started and what callers charged (an LLM client charges the
tokens a reply used and its price). Once a cap is reached the budget is spent for good: a
limiter holding it admits no new call (``BudgetStop``), calls in flight finish, and the run
ends with the status "budget". What was spent is stored with the run, so a resume with a
larger budget continues from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowkit.errors import BudgetStop

if TYPE_CHECKING:
    from flowkit.limits import Limit

__all__ = ["BudgetStats"]


@dataclass
class BudgetStats:
    """A budget against what was spent: calls started, tokens and cost charged (resumed
    runs included), and ``spent``: why it stopped the run, or None."""

    name: str
    max_calls: int | None
    max_tokens: float | None
    max_cost: float | None
    calls: int
    tokens: float
    cost: float
    spent: str | None = None

    def line(self) -> str:
        """Spent against allowed, in one line."""
        parts = []
        if self.max_calls is not None:
            parts.append(f"{self.calls:,} of {self.max_calls:,} calls")
        if self.max_tokens is not None:
            parts.append(f"{self.tokens:,.0f} of {self.max_tokens:,.0f} tokens")
        if self.max_cost is not None:
            parts.append(f"${self.cost:,.4f} of ${self.max_cost:,.2f}")
        state = f": spent ({self.spent})" if self.spent else ""
        return f"budget {self.name}: {', '.join(parts)}{state}"


class Budget:
    """The run-time form of a ``Limit``'s (or a run's) budget: what calls started, and what
    callers charged, against its caps. Once a cap is reached it is ``spent`` for good and
    ``check`` raises ``BudgetStop``; ``on_spent`` hears it once."""

    __slots__ = (
        "calls",
        "cost",
        "max_calls",
        "max_cost",
        "max_tokens",
        "name",
        "on_spent",
        "spent",
        "tokens",
    )

    def __init__(self, name: str, limit: Limit) -> None:
        self.name = name
        self.max_calls, self.max_tokens, self.max_cost = (
            limit.max_calls,
            limit.max_tokens,
            limit.max_cost,
        )
        self.calls, self.tokens, self.cost = 0, 0.0, 0.0
        self.spent: str | None = None
        self.on_spent: Callable[[Budget], None] | None = None

    def check(self) -> None:
        """Raise ``BudgetStop`` once spent."""
        if self.spent is not None:
            raise BudgetStop(f"budget {self.name}: {self.spent}")

    def charge(self, calls: int = 0, tokens: float = 0.0, cost: float = 0.0) -> None:
        """Add what a call used; the first cap reached makes the budget spent."""
        self.calls += calls
        self.tokens += tokens
        self.cost += cost
        if self.spent is None:
            if self.max_calls is not None and self.calls >= self.max_calls:
                self.spent = f"max_calls {self.max_calls:,} reached"
            elif self.max_tokens is not None and self.tokens >= self.max_tokens:
                self.spent = f"max_tokens {self.max_tokens:,.0f} reached"
            elif self.max_cost is not None and self.cost >= self.max_cost:
                self.spent = f"max_cost ${self.max_cost:,.2f} reached"
            if self.spent is not None and self.on_spent is not None:
                self.on_spent(self)

    def stats(self) -> BudgetStats:
        return BudgetStats(
            self.name,
            self.max_calls,
            self.max_tokens,
            self.max_cost,
            self.calls,
            self.tokens,
            self.cost,
            self.spent,
        )
