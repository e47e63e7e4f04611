"""The cache across runs: exec results by a key of what made them, in one SQLite file.

Unlike the run store, which finishes one run, the cache serves every later run: a result is
found by a digest of the node's code and params, the item and what else the node says the
result depends on (``flowkit.runner.caching`` makes the key). Values are JSON text, as in
the store; writes are grouped, one transaction per pass of the event loop. Several
processes may share a cache file (WAL mode).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from flowkit.errors import StoreError

APPLICATION = "flowkit-cache"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    value TEXT NOT NULL,
    written REAL NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class CacheSummary:
    """One node's entries in a cache: how many, their JSON's size, oldest and newest."""

    node: str
    entries: int
    bytes: int
    oldest: float
    newest: float


class ResultCache:
    """A cache file at ``path`` (created if missing, unless ``readonly``)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"the cache {self.path} is a folder; give the path of a file in it")
        if readonly and not self.path.is_file():
            raise StoreError(f"no cache at {self.path}")
        try:
            if readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master")}
            found = (
                self._conn.execute("SELECT value FROM meta WHERE key = 'application'").fetchone()
                if "meta" in tables
                else None
            )
            if tables and (found is None or found[0] != APPLICATION):
                self._conn.close()
                raise StoreError(f"{self.path} is not a flowkit cache; it was left untouched")
            if not readonly:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.executescript(
                    f"BEGIN IMMEDIATE;{_SCHEMA}INSERT OR IGNORE INTO meta VALUES "
                    f"('application', '{APPLICATION}');COMMIT;"
                )
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot use the cache {self.path} ({exc}); point the cache at another file"
            ) from None
        self._pending: list[tuple[str, str, str, float]] = []

    def get(self, key: str, ttl: float | None = None) -> str | None:
        """The JSON text stored under ``key``, or None (none, or older than ``ttl`` s)."""
        try:
            row = self._conn.execute(
                "SELECT value, written FROM entries WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the cache {self.path} ({exc})") from None
        if row is None or (ttl is not None and time.time() - row[1] > ttl):
            return None
        text: str = row[0]
        return text

    def put(self, key: str, node: str, text: str) -> None:
        """Keep ``text`` under ``key``; written at the next ``flush``."""
        self._pending.append((key, node, text, time.time()))

    def flush(self) -> None:
        """Write what ``put`` kept, in one transaction."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        try:
            with self._conn:
                self._conn.execute("BEGIN")
                self._conn.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the cache {self.path} ({exc})") from None

    def summary(self) -> list[CacheSummary]:
        """Entries per node, by node name."""
        rows = self._conn.execute(
            "SELECT node, COUNT(*), TOTAL(LENGTH(value)), MIN(written), MAX(written) "
            "FROM entries GROUP BY node ORDER BY node"
        ).fetchall()
        return [CacheSummary(n, c, int(b), lo, hi) for n, c, b, lo, hi in rows]

    def clear(self, nodes: Iterable[str] = (), older_than: float | None = None) -> int:
        """Remove entries (of ``nodes`` only, when given; older than ``older_than`` seconds
        only, when given); returns how many went."""
        where: list[str] = []
        args: list[object] = []
        names = list(nodes)
        if names:
            where.append(f"node IN ({', '.join('?' * len(names))})")
            args.extend(names)
        if older_than is not None:
            where.append("written < ?")
            args.append(time.time() - older_than)
        sql = "DELETE FROM entries" + (" WHERE " + " AND ".join(where) if where else "")
        try:
            with self._conn:
                self._conn.execute("BEGIN")
                removed = self._conn.execute(sql, args).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot clear the cache {self.path} ({exc})") from None
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("VACUUM")
        return int(removed)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._conn.close()
