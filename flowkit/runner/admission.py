"""Admission: what one exec call takes before it runs and gives back after, in one order.

A slot of the node's limit, then its named limiters (in name order), then a place in the
in-flight count; waits for either are recorded for the item's path. Every exec call of the
run (single items, chunks for worker processes, micro-batches, retries) goes through here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowkit.events import Event
from flowkit.limits import NamedLimiter

if TYPE_CHECKING:
    from flowkit.runner.plan import Plan
    from flowkit.runner.state import RunState


class Admission:
    """Admits exec calls of ``plan``'s node at ``path``."""

    __slots__ = ("leave", "limiters", "path", "plan", "run", "slots", "stats", "try_enter")

    def __init__(self, run: RunState, plan: Plan, path: str) -> None:
        self.run, self.plan, self.path = run, plan, path
        self.slots, self.limiters, self.stats = plan.slots, plan.limiters, plan.stats
        self.try_enter = self._no_wait() if not self.limiters else _false
        self.leave = self._leaver()

    def _no_wait(self) -> Callable[[], bool]:
        """``try_enter()``: admit a call now if nothing must be waited for (a free slot and
        no named limiter); False when it must ``enter``. Built once: it runs once per item,
        so it takes the slot as ``Slots.try_acquire`` does, without the extra call."""
        slots, stats, clock = self.slots, self.stats, time.monotonic
        capacity, waiters = slots.capacity, slots.waiters

        def try_enter() -> bool:
            if slots.in_use >= capacity or waiters:
                return False
            slots.in_use += 1
            if slots.in_use > slots.peak:
                slots.peak = slots.in_use
            stats.in_flight += 1
            if stats.in_flight > stats.peak_in_flight:
                stats.peak_in_flight = stats.in_flight
                stats.peak_at = clock()
            return True

        return try_enter

    def _leaver(self) -> Callable[[], None]:
        """``leave()``: the call is over: out of the in-flight count, limiters and slot given
        back (a waiting caller, if any, gets the slot)."""
        slots, stats, limiters = self.slots, self.stats, self.limiters
        release, waiters = slots.release, slots.waiters
        if not limiters:

            def leave() -> None:
                stats.in_flight -= 1
                if waiters:
                    release()
                else:
                    slots.in_use -= 1

            return leave

        def leave_all() -> None:
            stats.in_flight -= 1
            for lim in limiters:
                lim.release()
            release()

        return leave_all

    async def enter(self, index: int = -1, requests: int = 1) -> None:
        """Wait for a slot and the named limiters (``requests`` of each), then count the call
        in flight."""
        run, plan, slots = self.run, self.plan, self.slots
        if not slots.try_acquire():
            t0 = time.monotonic()
            await slots.acquire()
            run.waited(plan, self.path, index, "node limit", t0, time.monotonic())
        taken: list[NamedLimiter] = []
        try:
            for lim in self.limiters:
                waited = await lim.acquire(requests=requests)
                taken.append(lim)
                if waited > 0:
                    ended = time.monotonic()
                    what = f"limiter {lim.name}"
                    run.waited(plan, self.path, index, what, ended - waited, ended, lim.name)
        except BaseException:
            for lim in taken:
                lim.release()
            slots.release()
            raise
        self.stats.enter()

    def span(self, index: int, started: float, ended: float, ok: bool, path: str = "") -> None:
        """Emit the item's start and end (if anyone listens), at ``path`` or the admission's."""
        emit = self.run.emit
        if emit is not None:
            run_id, path, name = self.run.info.run_id, path or self.path, self.plan.name
            emit(Event("item_start", started, run_id, path, name, index))
            emit(Event("item_end", ended, run_id, path, name, index, ok))


def _false() -> bool:
    return False
