"""What the search may still spend, and stopping on request.

``Budget`` says whether a round (or the end's re-score and test) fits what is left of the
calls billed, the dollars (each call priced at the run's mean so far) and the wall time
(a round starts only if the mean round so far fits). ``StopSwitch`` ends the search after
the round in progress when its file appears or the process gets SIGUSR1
(``kill -USR1 PID``); the best found so far is still re-scored, tested and written.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from flows.prompt_opt.config import PromptOptConfig, round_worst_case
from flows.prompt_opt.state import Pool

STOP_SIGNAL = getattr(signal, "SIGUSR1", None)
"""The signal that asks a running optimisation to stop after its round (POSIX only)."""


class StopSwitch:
    """Whether someone asked the search to stop: by a file, a signal, or ``request()``."""

    def __init__(self, stop_file: Path | None = None) -> None:
        self.stop_file = stop_file
        self._asked: str | None = None
        self.started = time.monotonic()

    def clear(self) -> bool:
        """Remove a stop file left by an earlier run; True when there was one."""
        if self.stop_file is not None and self.stop_file.exists():
            self.stop_file.unlink()
            return True
        return False

    def request(self, why: str = "stop requested") -> None:
        """Ask the search to stop after the round in progress."""
        self._asked = why

    def requested(self) -> str | None:
        """Why the search should stop now, or None."""
        if self._asked is not None:
            return self._asked
        if self.stop_file is not None and self.stop_file.exists():
            return f"stop file {self.stop_file} found"
        return None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def install(self) -> Callable[[], None]:
        """Make SIGUSR1 ask for a stop; return what undoes it. Only the main thread may set
        signal handlers, so elsewhere (and on Windows) this does nothing."""
        if STOP_SIGNAL is None or threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, frame: FrameType | None) -> None:
            self.request(f"signal {signal.Signals(signum).name} received")

        previous = signal.signal(STOP_SIGNAL, handler)

        def undo() -> None:
            signal.signal(STOP_SIGNAL, previous)

        return undo

    @contextlib.contextmanager
    def on_signal(self) -> Iterator[None]:
        """While inside, SIGUSR1 asks for a stop (see ``install``)."""
        undo = self.install()
        try:
            yield
        finally:
            undo()


class Budget:
    """Calls billed, dollars and seconds left, against the config's caps."""

    def __init__(
        self,
        config: PromptOptConfig,
        pool: Pool,
        prices: Any,
        stop: StopSwitch,
        per_eval: int,
        splits: Any,
    ) -> None:
        self.config, self.pool, self.prices, self.stop = config, pool, prices, stop
        self.per_eval = per_eval
        self.train, self.val = len(splits.train), len(splits.val)
        self.round_times: list[float] = []

    def fits(self, calls: int) -> bool:
        """Whether ``calls`` more calls fit the budget and (at the mean price so far) the
        cost cap."""
        config, spent = self.config, self.pool.attempts()
        if config.budget is not None and spent + calls > config.budget:
            return False
        if config.max_cost is not None:
            cost = self.pool.cost(self.prices)
            per_call = cost / spent if spent else 0.0
            if cost + calls * per_call > config.max_cost:
                return False
        return True

    def round_fits(self, proposals: int, reserve: int) -> bool:
        """Whether a round of ``proposals`` fits at its worst, keeping ``reserve`` calls."""
        worst = round_worst_case(self.config, proposals, self.train, self.val, self.per_eval)
        return self.fits(worst + reserve)

    def out_of_time(self) -> str | None:
        """Why no round may start in the time left: the mean round so far would not fit."""
        cap = self.config.max_time
        if cap is None or not self.round_times:
            return None
        used = self.stop.elapsed()
        if used + sum(self.round_times) / len(self.round_times) <= cap:
            return None
        return (
            f"wall-time cap: {used:.1f} s of {cap:g} s used; a round takes longer than what is left"
        )

    def why_no_room(self, reserve: int) -> str:
        """Why not even one proposal fits: the calls or the dollars."""
        config, spent = self.config, self.pool.attempts()
        worst = round_worst_case(config, 1, self.train, self.val, self.per_eval)
        if config.budget is not None and spent + worst + reserve > config.budget:
            return (
                f"budget spent: {spent} of {config.budget} calls billed; a round may need {worst}"
            )
        return (
            f"cost cap: ${self.pool.cost(self.prices):.4f} of ${config.max_cost:g} spent; the "
            "next round might exceed it"
        )
