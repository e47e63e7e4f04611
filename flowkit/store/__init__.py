"""Durable runs: every finished exec result written to SQLite as it lands.

A writer process owns the writes and commits whatever has arrived in one transaction (group
commit), so the event loop never waits on the disk and a SIGKILL loses at most the results of
the last few milliseconds. WAL mode keeps the file consistent through any crash. Values are
JSON text, never pickle: opening a store cannot run code.

``db`` holds the SQLite file, ``writer`` and ``writer_process`` the group-committing writer,
``lock`` the one-live-process-per-run lock, ``outcomes`` a resumed run's lookups, ``codec``
the JSON encoding of results and the item keys that recognise them on resume.
"""

from __future__ import annotations

from flowkit.errors import StoreError, UnknownRunError
from flowkit.store.db import ResumeMismatchError, RunSummary, Store, StoredResult
from flowkit.store.lock import RunLockedError

__all__ = [
    "ResumeMismatchError",
    "RunLockedError",
    "RunSummary",
    "Store",
    "StoreError",
    "StoredResult",
    "UnknownRunError",
]
