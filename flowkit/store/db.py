"""The SQLite file: its schema, runs and their stored results, read back for resume and export."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowkit.errors import StoreError, UnknownRunError
from flowkit.store.writer import StoreWriter

SCHEMA_VERSION = 1
APPLICATION = "flowkit"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    item_key TEXT NOT NULL,
    item_index INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    value TEXT NOT NULL,
    written REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_run ON results (run_id);
"""
# Results are appended, never updated in place: appends keep writes sequential (a unique
# index on random item keys costs several times more per row). An item written twice (a
# failure, then a success on resume) keeps its latest row.
_LATEST = """SELECT node, item_key, item_index, ok, value FROM results WHERE rowid IN (
    SELECT MAX(rowid) FROM results WHERE run_id = ? GROUP BY node, item_key)"""


Stored = tuple[bool, str]  # (ok, JSON text)
@dataclasses.dataclass(frozen=True)
class RunSummary:
    """One run in a store."""

    run_id: str
    flow: str
    started: float
    finished: float | None
    status: str
    done: int
    failed: int


@dataclasses.dataclass(frozen=True)
class StoredResult:
    """One stored exec outcome: a result (ok) or an error record (not ok)."""

    node: str
    item_key: str
    index: int
    ok: bool
    value: Any


class Store:
    """A SQLite checkpoint store at ``path`` (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self.path.exists() and self.path.stat().st_size > 0:
            self._check_existing()  # read-only: a file we refuse is never modified
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
            conn.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION))],
            )
        return conn

    def _check_existing(self) -> None:
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                meta = (
                    dict(conn.execute("SELECT key, value FROM meta").fetchall())
                    if "meta" in tables
                    else {}
                )
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is not a usable SQLite database ({exc}); it was left untouched. "
                "Point the store at another file"
            ) from None
        if meta.get("application") != APPLICATION:
            raise StoreError(
                f"{self.path} is a database that flowkit did not create (tables: "
                f"{', '.join(sorted(tables)) or 'none'}); it was left untouched"
            )
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema {version}, newer than this flowkit's "
                f"{SCHEMA_VERSION}; upgrade flowkit to read it (the file was left untouched)"
            )

    def close(self) -> None:
        self._conn.close()

    # -- runs -----------------------------------------------------------------------------

    def begin(
        self, run_id: str, flow: str, *, resume: bool
    ) -> dict[tuple[str, str], tuple[bool, str]]:
        """Register a run; when resuming, return its stored outcomes keyed by (node, key)."""
        row = self._conn.execute("SELECT flow FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if resume:
            if row is None:
                known = [r.run_id for r in self.runs()][:10]
                raise UnknownRunError(
                    f"run {run_id!r} is not in {self.path}; runs there: "
                    f"{', '.join(known) or 'none'}"
                )
            self._conn.execute("UPDATE runs SET status = 'running' WHERE run_id = ?", (run_id,))
            rows = self._conn.execute(
                "SELECT node, item_key, ok, value FROM results WHERE run_id = ? ORDER BY rowid",
                (run_id,),
            )
            return {(node, key): (bool(ok), value) for node, key, ok, value in rows}
        if row is not None:
            raise StoreError(
                f"run {run_id!r} already exists in {self.path}; resume it with "
                f"resume={run_id!r} or choose another run id"
            )
        self._conn.execute(
            "INSERT INTO runs VALUES (?, ?, ?, NULL, 'running')", (run_id, flow, time.time())
        )
        return {}

    def finish(self, run_id: str, status: str) -> None:
        self._conn.execute(
            "UPDATE runs SET finished = ?, status = ? WHERE run_id = ?",
            (time.time(), status, run_id),
        )

    def runs(self) -> list[RunSummary]:
        """Every run in the store, newest first, with counts of done and failed items."""
        out = []
        runs = self._conn.execute("SELECT * FROM runs ORDER BY started DESC").fetchall()
        for run_id, flow, started, finished, status in runs:
            oks = [r[3] for r in self._conn.execute(_LATEST, (run_id,))]
            done = sum(oks)
            out.append(RunSummary(run_id, flow, started, finished, status, done, len(oks) - done))
        return out

    def results(self, run_id: str, node: str | None = None) -> Iterator[StoredResult]:
        """A run's stored outcomes in (node, index) order; ``node`` filters by name or path."""
        if not self._conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
            raise UnknownRunError(f"run {run_id!r} is not in {self.path}")
        sql = f"SELECT * FROM ({_LATEST})"
        args: list[Any] = [run_id]
        if node is not None:
            sql += " WHERE node = ? OR node LIKE ?"
            args += [node, f"%/{node}"]
        for n, key, index, ok, value in self._conn.execute(
            sql + " ORDER BY node, item_index", args
        ):
            yield StoredResult(n, key, index, bool(ok), json.loads(value))

    # -- writing --------------------------------------------------------------------------

    async def writer(self, run_id: str) -> StoreWriter:
        """Start the writer process for ``run_id``'s results."""
        return await StoreWriter.start(self, run_id)
