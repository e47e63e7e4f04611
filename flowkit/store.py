"""Durable runs: every finished exec result written to SQLite as it lands.

A writer process owns the writes and commits whatever has arrived in one transaction (group
commit), so the event loop never waits on the disk and a SIGKILL loses at most the results of
the last few milliseconds. WAL mode keeps the file consistent through any crash. Values are
JSON text, never pickle: opening a store cannot run code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

from flowkit.errors import StoreError, UnknownRunError

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
    """A stable key for an item's content (and the params its node ran with).

    An int of fewer than 32 characters is its own key (its decimal text, so it cannot meet a
    hashed key); any other content is hashed to 32 hex characters.
    """
    if params:
        text = dumps([item, params])
    elif type(item) is int:
        text = str(item)
        if len(text) < 32:
            return text
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

    async def writer(self, run_id: str) -> StoreWriter:
        """Start the writer process for ``run_id``'s results."""
        return await StoreWriter.start(self, run_id)


# Write ends of writer pipes open in this process. A child forked from it (a process worker)
# must not keep one open, or its writer would never see the end of its input.
_OPEN_PIPES: set[int] = set()


def _close_pipes_in_child() -> None:
    for fd in _OPEN_PIPES:
        with contextlib.suppress(OSError):
            os.close(fd)
    _OPEN_PIPES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_pipes_in_child)


class _Pipe(asyncio.BaseProtocol):
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = asyncio.get_running_loop().create_future()
        _OPEN_PIPES.add(fd)

    def connection_lost(self, exc: Exception | None) -> None:
        _OPEN_PIPES.discard(self.fd)  # the transport closes the fd right after this
        if not self.closed.done():
            self.closed.set_result(None)


class StoreWriter:
    """Hands groups of encoded rows to a writer process, which commits them to SQLite.

    The process (``flowkit/_store_writer.py``) commits whatever has arrived when its last
    commit ends, so results reach the disk within about one commit however busy the event
    loop is: a writer thread in this process would wait for the loop's GIL instead. Writes to
    its pipe never block the loop. If this process dies, the writer still commits every
    group it was sent.
    """

    def __init__(
        self,
        store: Store,
        proc: subprocess.Popen[bytes],
        transport: asyncio.WriteTransport,
        pipe: _Pipe,
    ) -> None:
        self.store, self._proc, self._transport, self._pipe = store, proc, transport, pipe
        self._nodes: dict[str, bytes] = {}

    @classmethod
    async def start(cls, store: Store, run_id: str) -> StoreWriter:
        script = Path(__file__).with_name("_store_writer.py")
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(script), str(store.path), run_id],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C stops the run, not the commit of its results
        )
        assert proc.stdin is not None
        loop = asyncio.get_running_loop()
        fd = proc.stdin.fileno()
        transport, pipe = await loop.connect_write_pipe(lambda: _Pipe(fd), proc.stdin)
        return cls(store, proc, transport, pipe)

    def put(self, node: str, ok: bool, rows: bytes) -> None:
        """Send ``rows``, a JSON array of ``[item_key, item_index, value]`` for ``node``."""
        if self._transport.is_closing():
            raise self._failure()
        name = self._nodes.get(node)
        if name is None:
            name = self._nodes[node] = json.dumps(node).encode()
        self._transport.write(b"%d\t%s\t%s\n" % (ok, name, rows))

    async def close(self) -> None:
        """Wait until everything sent is committed and the writer has exited."""
        self._transport.close()  # sends what is still buffered, then end of input
        await self._pipe.closed
        while self._proc.poll() is None:
            await asyncio.sleep(0.002)
        if self._proc.returncode:
            raise self._failure()

    def _failure(self) -> StoreError:
        """The error for a writer that stopped taking rows, with what it said."""
        try:
            code: int | None = self._proc.wait(timeout=5)  # it closed its end: it is exiting
        except subprocess.TimeoutExpired:
            code = None
        err = b""
        if code is not None and self._proc.stderr is not None:
            err = self._proc.stderr.read()
        detail = err.decode(errors="replace").strip() or f"writer process exit code {code}"
        return StoreError(f"writing to {self.store.path} failed: {detail}")


_MISSING = object()


_ROW_CONFIG = ConfigDict(ser_json_inf_nan="constants", ser_json_bytes="hex")


class ResultCodec:
    """Turns exec results into JSON and back, typed by exec's return annotation.

    With an annotation (a pydantic model, ``list[int]``, ``tuple[str, float]``...) a resumed
    result comes back as the same type; without one it comes back as plain JSON data.
    NaN and infinities are kept; bytes are stored as hex.
    """

    def __init__(self, node_name: str, annotation: Any = _MISSING) -> None:
        self.node_name = node_name
        self.adapter: TypeAdapter[Any] | None = None
        self._annotation: Any = Any
        self._rows: TypeAdapter[Any] | None = None
        if annotation is not _MISSING and annotation is not Any:
            try:
                self.adapter = TypeAdapter(annotation)
                self._annotation = annotation
            except Exception:  # an annotation pydantic cannot validate: store plain JSON
                self.adapter = None

    @classmethod
    def for_method(cls, node_name: str, method: Any) -> ResultCodec:
        try:
            hints = typing.get_type_hints(method)
        except Exception:
            hints = {}
        return cls(node_name, hints.get("return", _MISSING))

    def encode_rows(self, rows: list[tuple[str, int, Any]]) -> tuple[bytes, StoreError | None]:
        """``[[item_key, item_index, value], ...]`` as JSON for a group of results.

        One encoder call for the whole group. If some value cannot be encoded, the others are
        still returned, with the error for the first that could not.
        """
        if self._rows is None:
            self._rows = _rows_adapter(self._annotation)
        try:
            return _dump(self._rows, rows), None
        except Exception:  # find the values that do not fit, keep the rest
            parts, error = [], None
            for row in rows:
                try:
                    parts.append(self._encode_row(row))
                except StoreError as exc:
                    error = error or exc
            return f"[{','.join(parts)}]".encode(), error

    def _encode_row(self, row: tuple[str, int, Any]) -> str:
        assert self._rows is not None
        for adapter in (self._rows, _plain_rows()):  # a value of another type: plain JSON
            try:
                return _dump(adapter, [row])[1:-1].decode()
            except Exception as exc:
                error = exc
        value = row[2]
        raise StoreError(
            f"{self.node_name}: exec returned {type(value).__name__} for item {row[1]}, which "
            f"cannot be checkpointed as JSON ({error}). Return JSON-friendly data or a pydantic "
            "model, or set checkpoint = False on the node"
        )

    def decode(self, text: str) -> Any:
        """The stored value; ``ValueError`` if it no longer fits exec's annotation."""
        data = json.loads(text)
        if self.adapter is not None:
            return self.adapter.validate_python(data)
        return data


def _rows_adapter(annotation: Any) -> TypeAdapter[Any]:
    if annotation is Any:
        return _plain_rows()
    try:
        row = tuple.__class_getitem__((str, int, annotation))
        return TypeAdapter(list[row], config=_ROW_CONFIG)  # type: ignore[valid-type]
    except Exception:
        return _plain_rows()


@functools.cache
def _plain_rows() -> TypeAdapter[Any]:
    return TypeAdapter(list[tuple[str, int, Any]], config=_ROW_CONFIG)


def _dump(adapter: TypeAdapter[Any], rows: list[tuple[str, int, Any]]) -> bytes:
    return adapter.dump_json(rows, warnings=False, fallback=_default)
