"""Retry policies built from tenacity's stop, wait and retry strategies.

The runner tries each item once with no retry machinery at all; only after a failure does it
consult the policy, which answers two questions: retry this exception? and after how long?
A ``retry_after`` attribute on the exception (seconds, e.g. from an HTTP Retry-After header)
raises the wait to at least that much.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from flowkit.errors import ConfigError

__all__ = [
    "Retry",
]

T = TypeVar("T")

if TYPE_CHECKING:
    import tenacity


@dataclass(frozen=True)
class Retry:
    """How a node retries a failed exec.

    ``attempts`` counts every try, the first included (PocketFlow's ``max_retries``).
    The wait before try ``n + 1`` is ``min(max_wait, initial * 2 ** (n - 1))`` plus up to
    ``jitter`` seconds of random jitter, but never less than the exception's ``retry_after``.
    Only exceptions that are instances of ``retry_on`` are retried.
    """

    attempts: int = 3
    initial: float = 0.5
    max_wait: float = 30.0
    jitter: float = 0.5
    exponential: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    _strategies: tuple[object, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ConfigError(f"Retry.attempts must be an int >= 1, got {self.attempts!r}")
        if self.attempts < 1:
            raise ConfigError(f"Retry.attempts must be an int >= 1, got {self.attempts!r}")
        for name in ("initial", "max_wait", "jitter"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"Retry.{name} must be a number >= 0, got {value!r}")
        import tenacity  # here, not at import time: most runs never build a policy

        wait: tenacity.wait.wait_base
        if self.exponential:
            wait = tenacity.wait_exponential(multiplier=self.initial, max=self.max_wait)
            wait = wait + tenacity.wait_random(0, self.jitter)
        else:
            wait = tenacity.wait_fixed(self.initial) + tenacity.wait_random(0, self.jitter)
        strategies = (
            tenacity.stop_after_attempt(self.attempts),
            wait,
            tenacity.retry_if_exception_type(self.retry_on),
        )
        object.__setattr__(self, "_strategies", strategies)

    @classmethod
    def fixed(cls, attempts: int, wait: float) -> Retry:
        """PocketFlow's policy: ``attempts`` tries, ``wait`` seconds apart, every exception."""
        return cls(attempts=attempts, initial=wait, jitter=0.0, exponential=False)

    def next_wait(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds to wait before the next try after ``attempt`` failed, or None to give up."""
        from tenacity import RetryCallState

        stop, wait, retry = self._strategies
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempt
        state.set_exception((type(exc), exc, exc.__traceback__))
        if not retry(state) or stop(state):  # type: ignore[operator]
            return None
        delay = float(wait(state))  # type: ignore[operator]
        hint = getattr(exc, "retry_after", None)
        if isinstance(hint, int | float) and hint > delay:
            delay = float(hint)
        return delay


async def retry_failed(
    exc: Exception,
    call: Callable[[int], Awaitable[T]],
    policy: Retry | None,
    sleep: Callable[[float], Awaitable[None]],
    on_retry: Callable[[int, float, Exception], None],
) -> tuple[bool, T | Exception, int]:
    """After a first try failed with ``exc``, try ``call(attempt)`` again while ``policy``
    allows, calling ``on_retry(attempt, wait, exc)`` before each wait. Returns ``(True,
    result, tries)`` on success, else ``(False, last exception, tries)``."""
    attempt = 1
    while policy is not None:
        delay = policy.next_wait(attempt, exc)
        if delay is None:
            break
        on_retry(attempt, delay, exc)
        if delay > 0:
            await sleep(delay)
        try:
            return True, await call(attempt), attempt + 1
        except Exception as again:
            exc = again
        attempt += 1
    return False, exc, attempt
