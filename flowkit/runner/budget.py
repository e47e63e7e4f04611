"""A run's budgets: the run's own (``Runner(budget=...)``) and each named limiter's, and the
gate every worker passes before it takes its next item.

Once one budget is spent the gate closes for good: a worker stops before its next item
(``BudgetStop``), calls in flight finish, and the run ends with the status "budget". What
each budget had spent is stored with the run when it ends (``spent``) and counted again
(``restore``) when it is resumed, so a resume with a larger budget continues from there.
The gate also carries the memory guard's backpressure, when the run has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowkit.budgets import Budget, BudgetStats
from flowkit.errors import BudgetStop
from flowkit.limits import Limit
from flowkit.runner.memory import MemoryGuard

RUN = "run"
"""The name of the run's own budget (``Runner(budget=...)``)."""


class Budgets:
    """The run's budgets by name, and the gate (``engaged``/``admit``) its workers check."""

    def __init__(self, run: Limit | None, memory: MemoryGuard | None) -> None:
        self.memory = memory
        self.stop: str | None = None
        self.budgets: dict[str, Budget] = {}
        self._restored: dict[str, list[float]] = {}
        self.run = self._add(RUN, run) if run is not None else None

    def _add(self, name: str, limit: Limit) -> Budget:
        budget = self.budgets[name] = Budget(name, limit)
        budget.on_spent = self._spent
        calls, tokens, cost = self._restored.get(name, (0, 0.0, 0.0))
        if calls or tokens or cost:
            budget.charge(int(calls), tokens, cost)
        return budget

    def _spent(self, budget: Budget) -> None:
        if self.stop is None:
            self.stop = f"budget {budget.name}: {budget.spent}"

    def of_limiter(self, name: str, limit: Limit) -> tuple[Budget, ...]:
        """The budgets a named limiter counts against: its own, then the run's."""
        own = (self._add(name, limit),) if limit.budgeted else ()
        return own + ((self.run,) if self.run is not None else ())

    # -- the gate (what ``run_items`` calls its guard) ---------------------------------------

    @property
    def engaged(self) -> bool:
        return self.stop is not None or (self.memory is not None and self.memory.engaged)

    async def admit(self) -> None:
        """Wait for the memory guard; raise ``BudgetStop`` once a budget is spent."""
        if self.stop is None and self.memory is not None:
            await self.memory.admit()
        if self.stop is not None:
            raise BudgetStop(self.stop)

    @property
    def engagements(self) -> int:
        return self.memory.engagements if self.memory is not None else 0

    @property
    def emit(self) -> Any:
        return self.memory.emit if self.memory is not None else None

    @emit.setter
    def emit(self, value: Any) -> None:
        if self.memory is not None:
            self.memory.emit = value

    # -- across sessions of a run -----------------------------------------------------------

    def spent(self) -> dict[str, list[float]]:
        """What each budget spent (calls, tokens, cost), to store with the run."""
        out = dict(self._restored)
        out.update({n: [b.calls, b.tokens, b.cost] for n, b in self.budgets.items()})
        return out

    def restore(self, spent: Mapping[str, Any]) -> None:
        """Count what a resumed run had spent before."""
        for name, amounts in spent.items():
            try:
                calls, tokens, cost = (float(a) for a in amounts)
            except (TypeError, ValueError):
                continue  # not written by this flowkit: start from nothing
            self._restored[name] = [calls, tokens, cost]
            budget = self.budgets.get(name)
            if budget is not None:
                budget.charge(int(calls), tokens, cost)

    def stats(self) -> dict[str, BudgetStats]:
        return {name: b.stats() for name, b in sorted(self.budgets.items())}
