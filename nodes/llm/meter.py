"""What LLM calls billed: requests sent, answered and failed, and tokens, per client name.

Inside ``with metered() as bills:``, every ``LLMClient`` call adds to ``bills[client.name]``:
each request sent (first tries, retries, structured-output re-asks, failed tries), the ones
answered and their tokens, and the calls that failed for good. Tasks started inside the
block (``asyncio.gather``) add to the same bills. Outside a block nothing is counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar

from pydantic import BaseModel


class Bill(BaseModel):
    """What one client's calls cost: requests and tokens."""

    attempts: int = 0
    """Requests sent: every try, retries and re-asks included."""
    answered: int = 0
    """Requests that got a reply (a re-asked reply included)."""
    failed: int = 0
    """Calls whose last try got no reply (their tries all failed)."""
    reasks: int = 0
    """Replies that failed validation and were asked again."""
    replayed: int = 0
    """Calls answered from a journal, without a request (not billed)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def retried(self) -> int:
        """Tries that failed and were tried again."""
        return self.attempts - self.answered - self.failed

    def plus(self, other: Bill) -> Bill:
        """The sum of two bills."""
        return Bill(**{k: getattr(self, k) + getattr(other, k) for k in Bill.model_fields})


Bills = dict[str, Bill]
"""Bills by client name."""

_current: ContextVar[Bills | None] = ContextVar("nodes_llm_bills", default=None)


@contextlib.contextmanager
def metered() -> Iterator[Bills]:
    """Count what the LLM calls made inside the block bill, by client name."""
    bills: Bills = {}
    token = _current.set(bills)
    try:
        yield bills
    finally:
        _current.reset(token)


def bill(name: str, **amounts: int) -> None:
    """Add ``amounts`` to ``name``'s bill in the enclosing ``metered()`` block, if any."""
    bills = _current.get()
    if bills is None:
        return
    entry = bills.get(name)
    if entry is None:
        entry = bills[name] = Bill()
    for key, value in amounts.items():
        setattr(entry, key, getattr(entry, key) + value)


def add_bills(total: Bills, more: Mapping[str, Bill]) -> None:
    """Add ``more`` into ``total``, name by name."""
    for name, entry in more.items():
        total[name] = total[name].plus(entry) if name in total else entry.model_copy()
