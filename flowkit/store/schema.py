"""The store's SQLite schema: its tables, the query of each item's latest outcome, and
making or upgrading a store's tables."""

from __future__ import annotations

import contextlib
import sqlite3

SCHEMA_VERSION = 2
APPLICATION = "flowkit"
PAGE_SIZE = 65536
"""SQLite's page size for new stores."""
SCHEMA = """
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
    written REAL NOT NULL,
    blob TEXT,
    blob_bytes INTEGER
);
CREATE INDEX IF NOT EXISTS results_by_run ON results (run_id);
CREATE TABLE IF NOT EXISTS fingerprints (run_id TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Results are appended, never updated in place: appends keep writes sequential (a unique
# index on random item keys costs several times more per row). An item written twice (a
# failure, then a success on resume) keeps its latest row. A large result is a file beside
# the store (``flowkit.store.blobs``): its row names it (``blob``) and holds no value.
# Schema 1 had no blob columns; a store opened for writing gains them.
LATEST = """SELECT node, item_key, item_index, ok, value, {blobs} FROM results WHERE rowid IN (
    SELECT MAX(rowid) FROM results WHERE run_id = ? GROUP BY node, item_key)"""


def prepare(conn: sqlite3.Connection, new: bool) -> None:
    """Set up a connection to write: WAL; on a ``new`` file, large pages; the tables made (one
    transaction, IF NOT EXISTS: safe when another process makes them too) or upgraded."""
    if new:  # large pages: a 200 KB result is 4 pages, not 50
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    if not _has_table(conn, "fingerprints"):  # new, or made by an older flowkit
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;{SCHEMA}INSERT OR IGNORE INTO meta VALUES "
                f"('application', '{APPLICATION}'), ('schema_version', '{SCHEMA_VERSION}');"
                "COMMIT;"
            )
        except BaseException:
            _rollback(conn)
            raise
    if not has_blobs(conn):
        conn.execute("BEGIN IMMEDIATE")
        try:
            _upgrade(conn)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise


def has_blobs(conn: sqlite3.Connection) -> bool:
    """Whether the results table has the blob columns (schema 2)."""
    return any(row[1] == "blob" for row in conn.execute("PRAGMA table_info(results)"))


def _upgrade(conn: sqlite3.Connection) -> None:
    """Schema 1 to 2: add the blob columns (once, however many processes open the store)."""
    if not has_blobs(conn):
        conn.execute("ALTER TABLE results ADD COLUMN blob TEXT")
        conn.execute("ALTER TABLE results ADD COLUMN blob_bytes INTEGER")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    return found is not None
