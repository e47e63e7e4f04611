"""A resumed run's stored outcomes, looked up in the store as its items come back."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from flowkit.errors import StoreError
from flowkit.store.blobs import Blobs

Stored = tuple[bool, str, bool]  # (ok, text, raw): JSON text, or a text result itself
_Row = tuple[bool, str, str | None, int | None]  # (ok, JSON text, blob file, its size)


class StoredOutcomes:
    """A resumed run's stored outcomes, looked up in the store as items come.

    Nothing is loaded up front: an index of the run's latest row per (node, item key) is
    built in SQLite's temporary storage, whose pages spill to disk, so resuming a run of a
    million results takes about the memory of a run of a few. Items usually come back in
    the order they were stored, so ``get`` with an item's index reads ahead a window of the
    next few hundred small outcomes of that node in one query; a large result stored as a
    file (``blobs``) is read when its item asks for it. ``get((node, key))`` is the latest
    ``(ok, text, raw)`` stored for that item, or None (also when its file is missing or
    incomplete, so the item runs again); an empty lookup is false.
    """

    WINDOW = 512
    """Item indexes read ahead per query."""
    WINDOW_BYTES = 4 << 20
    """At most this much stored text is held by read-ahead windows at once."""
    WINDOWS = 8
    """Node paths whose windows are kept at once."""

    def __init__(
        self,
        conn: sqlite3.Connection | None = None,
        error: Callable[[Exception, str], StoreError] | None = None,
        blobs: Blobs | None = None,
    ) -> None:
        self._conn, self._error, self._blobs = conn, error, blobs
        self._any = False
        self._windows: dict[str, tuple[int, int, dict[str, _Row]]] = {}
        if conn is None:
            return
        conn.execute("DROP TABLE IF EXISTS temp.resumed")
        conn.execute(
            "CREATE TEMP TABLE resumed (node TEXT, item_key TEXT, idx INTEGER, rid INTEGER, "
            "PRIMARY KEY (node, item_key)) WITHOUT ROWID"
        )

    def fill(self, run_id: str) -> None:
        """Index the latest outcome of each item of ``run_id``."""
        conn = self._conn
        assert conn is not None
        conn.execute(
            "INSERT OR REPLACE INTO temp.resumed SELECT node, item_key, item_index, rowid "
            "FROM results WHERE run_id = ? ORDER BY rowid",
            (run_id,),
        )
        conn.execute("CREATE INDEX temp.resumed_by_index ON resumed (node, idx)")
        self._any = conn.execute("SELECT 1 FROM temp.resumed LIMIT 1").fetchall() != []

    def __bool__(self) -> bool:
        return self._any

    def get(self, key: tuple[str, str], index: int | None = None) -> Stored | None:
        """The latest outcome stored for ``(node path, item key)``, or None; ``index``, the
        item's place in its batch, lets the lookup read ahead."""
        if not self._any:
            return None
        assert self._conn is not None and self._error is not None
        node, item_key = key
        try:
            if index is not None:
                window = self._windows.get(node)
                if window is None or not window[0] <= index < window[1]:
                    window = self._read_ahead(node, index)
                hit = window[2].get(item_key)
                if hit is not None:
                    return self._resolve(hit)
            rows = self._conn.execute(
                "SELECT ok, value, blob, blob_bytes FROM results WHERE rowid = "
                "(SELECT rid FROM temp.resumed WHERE node = ? AND item_key = ?)",
                key,
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read a stored result from") from None
        if not rows:
            return None
        ok, value, blob, size = rows[0]
        return self._resolve((bool(ok), value, blob, size))

    def _resolve(self, row: _Row) -> Stored | None:
        ok, value, blob, size = row
        if blob is None:
            return ok, value, False
        assert self._blobs is not None and size is not None
        found = self._blobs.read(blob, size)
        return None if found is None else (ok, *found)

    def _read_ahead(self, node: str, index: int) -> tuple[int, int, dict[str, _Row]]:
        """Outcomes of ``node`` stored at indexes from ``index`` on, up to ``WINDOW`` indexes
        or ``WINDOW_BYTES`` of text over all windows (what is left out is read when asked)."""
        assert self._conn is not None
        self._windows.pop(node, None)
        while len(self._windows) >= self.WINDOWS:
            self._windows.pop(next(iter(self._windows)))
        budget = self.WINDOW_BYTES // self.WINDOWS
        end = index + self.WINDOW
        found: dict[str, _Row] = {}
        cursor = self._conn.execute(
            "SELECT t.idx, t.item_key, r.ok, r.value, r.blob, r.blob_bytes FROM temp.resumed t "
            "JOIN results r ON r.rowid = t.rid WHERE t.node = ? AND t.idx >= ? AND t.idx < ? "
            "ORDER BY t.idx",
            (node, index, end),
        )
        try:
            for idx, item_key, ok, value, blob, size in cursor:
                budget -= len(value)
                if budget < 0:
                    end = max(index + 1, idx)  # the rest is read when asked
                    break
                found[item_key] = (bool(ok), value, blob, size)
        finally:
            cursor.close()
        window = self._windows[node] = (index, end, found)
        return window


NO_OUTCOMES = StoredOutcomes()
"""The lookup of a run with nothing stored."""
