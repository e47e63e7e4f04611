"""Durable runs: every finished exec result written to SQLite as it lands.

One writer thread owns the connection for writes and commits whatever has queued up in one
transaction (group commit), so the event loop never waits on the disk and a SIGKILL loses at
most the results of the last few milliseconds. WAL mode keeps the file consistent through any
crash. Values are JSON text, never pickle: opening a store cannot run code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import queue
import sqlite3
import threading
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from flowkit.errors import FlowkitError

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


_INSERT_GROUP = (
    "INSERT INTO results SELECT ?1, value ->> 0, value ->> 1, value ->> 2, value ->> 3, "
    "value ->> 4, ?2 FROM json_each(?3)"
)


class StoreError(FlowkitError):
    """The checkpoint store cannot be used: corrupt, foreign, newer schema, or bad data."""


class UnknownRunError(StoreError, KeyError):
    """The run id asked for is not in the store."""


Stored = tuple[bool, str]  # (ok, JSON text)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.hex()
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_encode_str = json.encoder.encode_basestring_ascii
_CANONICAL = json.JSONEncoder(default=_default, sort_keys=True, separators=(",", ":"))


def dumps(value: Any) -> str:
    """Canonical JSON for a value (pydantic models, dataclasses and arrays included)."""
    return _CANONICAL.encode(value)


def item_key(item: Any, params: dict[str, Any] | None = None) -> str:
    """A stable key for an item's content (and the params its node ran with)."""
    if params:
        text = dumps([item, params])
    elif type(item) is int:
        text = str(item)  # the same text JSON gives, without the encoder's set-up cost
    elif type(item) is str:
        text = _encode_str(item)
    else:
        text = dumps(item)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


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

    def writer(self, run_id: str) -> StoreWriter:
        return StoreWriter(self, run_id)


class StoreWriter:
    """Queues outcomes from the event loop; one thread commits them in groups.

    Group commit: whatever queued up while the last commit ran goes into the next one, so a
    result waits at most about one commit before it is on disk, and groups grow with load.
    """

    def __init__(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="flowkit-store", daemon=True)
        self._thread.start()

    def put(self, node: str, key: str, index: int, ok: bool, value: str) -> None:
        if self._error is not None:
            raise StoreError(f"writing to {self.store.path} failed: {self._error}")
        self._queue.put((node, key, index, int(ok), value))

    def _loop(self) -> None:
        conn = self.store._conn
        while True:
            first = self._queue.get()
            rows = [] if first is None else [first]
            stop = first is None
            while not stop:
                try:
                    row = self._queue.get_nowait()
                except queue.Empty:
                    break
                if row is None:
                    stop = True
                else:
                    rows.append(row)
            if rows:
                try:
                    # One statement for the whole group: SQLite unpacks the rows itself, so the
                    # GIL is released once per group instead of once per row.
                    with conn:
                        conn.execute("BEGIN")
                        conn.execute(_INSERT_GROUP, (self.run_id, time.time(), json.dumps(rows)))
                except sqlite3.Error as exc:
                    self._error = exc
            if stop:
                return

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise StoreError(f"writing to {self.store.path} failed: {self._error}")


_MISSING = object()


class ResultCodec:
    """Turns exec results into JSON and back, typed by exec's return annotation.

    With an annotation (a pydantic model, ``list[int]``, ``tuple[str, float]``...) a resumed
    result comes back as the same type; without one it comes back as plain JSON data.
    """

    def __init__(self, node_name: str, annotation: Any = _MISSING) -> None:
        self.node_name = node_name
        self.adapter: TypeAdapter[Any] | None = None
        if annotation is not _MISSING and annotation is not Any:
            try:
                self.adapter = TypeAdapter(annotation)
            except Exception:  # an annotation pydantic cannot validate: store plain JSON
                self.adapter = None

    @classmethod
    def for_method(cls, node_name: str, method: Any) -> ResultCodec:
        try:
            hints = typing.get_type_hints(method)
        except Exception:
            hints = {}
        return cls(node_name, hints.get("return", _MISSING))

    def encode(self, value: Any) -> str:
        try:
            if self.adapter is not None:
                try:
                    return self.adapter.dump_json(value).decode()
                except Exception:
                    pass  # e.g. a fallback value of another type: store it as plain JSON
            return dumps(value)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"{self.node_name}: exec returned {type(value).__name__}, which cannot be "
                f"checkpointed as JSON ({exc}). Return JSON-friendly data or a pydantic model, "
                "or set checkpoint = False on the node"
            ) from None

    def decode(self, text: str) -> Any:
        data = json.loads(text)
        if self.adapter is not None:
            return self.adapter.validate_python(data)
        return data
