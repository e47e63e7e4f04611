"""What the test server saw, kept so tests can check limits from the server's side."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

_REDACTED_HEADERS = frozenset({"authorization", "api-key", "x-api-key"})


class RequestRecord(BaseModel):
    """One API request: what was sent, when it was handled and how it ended."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    start_monotonic: float
    start_time: float
    end_monotonic: float | None = None
    end_time: float | None = None
    status: int | None = None
    reason: str | None = None
    """The injected fault ('429', '500', 'stall', 'malformed') or refusing limit ('rpm',
    'max_in_flight'); None for a plain answer."""

    @property
    def duration_s(self) -> float | None:
        """Seconds from the request being read to its answer (or the client leaving)."""
        if self.end_monotonic is None:
            return None
        return self.end_monotonic - self.start_monotonic


class StatsSnapshot(BaseModel):
    """A consistent copy of the server's counters at one moment."""

    in_flight: int
    peak_in_flight: int
    status_counts: dict[int, int]
    disconnects: int
    requests: list[RequestRecord]


class StatsRecorder:
    """Thread-safe counters and records, written by the server loop, read by tests."""

    def __init__(self, max_records: int) -> None:
        self._changed = threading.Condition()
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._next_index = 0
        self._in_flight = 0
        self._peak = 0
        self._statuses: Counter[int] = Counter()
        self._disconnects = 0

    def start(self, method: str, path: str, headers: dict[str, str], body: Any) -> RequestRecord:
        """Count a request as in flight and keep its record."""
        visible = {k: ("***" if k in _REDACTED_HEADERS else v) for k, v in headers.items()}
        with self._changed:
            record = RequestRecord(
                index=self._next_index,
                method=method,
                path=path,
                headers=visible,
                body=body,
                start_monotonic=time.monotonic(),
                start_time=time.time(),
            )
            self._next_index += 1
            self._records.append(record)
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            self._changed.notify_all()
        return record

    def finish(self, record: RequestRecord, status: int | None, reason: str | None) -> None:
        """End a request; ``status`` None means the client left before an answer."""
        with self._changed:
            record.end_monotonic = time.monotonic()
            record.end_time = time.time()
            record.status = status
            record.reason = reason
            self._in_flight -= 1
            if status is None:
                self._disconnects += 1
            else:
                self._statuses[status] += 1
            self._changed.notify_all()

    def snapshot(self) -> StatsSnapshot:
        with self._changed:
            return self._snapshot()

    def wait_for(self, predicate: Callable[[StatsSnapshot], bool], timeout: float) -> StatsSnapshot:
        """Block until ``predicate(snapshot)`` holds; TimeoutError after ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self._snapshot()), timeout):
                raise TimeoutError(f"server stats did not reach the condition in {timeout}s")
            return self._snapshot()

    def resize(self, max_records: int) -> None:
        """Keep at most ``max_records`` records from now on (the newest survive)."""
        with self._changed:
            self._records = deque(self._records, maxlen=max_records)

    def reset(self) -> None:
        """Forget records and counts; requests still in flight stay counted."""
        with self._changed:
            self._records.clear()
            self._peak = self._in_flight
            self._statuses.clear()
            self._disconnects = 0

    def _snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(
            in_flight=self._in_flight,
            peak_in_flight=self._peak,
            status_counts=dict(self._statuses),
            disconnects=self._disconnects,
            requests=[r.model_copy() for r in self._records],
        )
