"""The SQLite file: its schema, runs and their stored results, read back for resume and export.

Every SQLite failure leaves here as one ``StoreError`` that names the file and says what to
do (a damaged file, a read-only place, a store locked by another process, a full disk).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowkit.errors import FlowkitWarning, StoreError, UnknownRunError
from flowkit.fingerprint import Fingerprint
from flowkit.store.blobs import Blobs
from flowkit.store.lock import RunLock, describe_self, held, holder_key
from flowkit.store.outcomes import NO_OUTCOMES, StoredOutcomes
from flowkit.store.schema import APPLICATION, LATEST, SCHEMA_VERSION, has_blobs, prepare
from flowkit.store.writer import StoreWriter

BUSY_TIMEOUT_S = float(os.environ.get("FLOWKIT_STORE_BUSY_S", "5"))
"""How long a read or a run's start waits for another process's lock on the store (the
writer process waits 12 times as long before it fails the run)."""
HOLDER_WAIT_S = 30.0
"""How long a run waits for the writer of a dead process that held its run id."""


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
    """A SQLite checkpoint store at ``path`` (created if missing, unless ``readonly``).

    ``readonly`` opens it for ``runs`` and ``export``: nothing is created or written, and a
    store on read-only media can still be read.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock: RunLock | None = None
        if self.path.is_dir():
            raise StoreError(f"the store {self.path} is a folder; give the path of a file in it")
        if not readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the store's folder {self.path.parent} "
                    f"({exc.strerror or exc}); pass --store PATH (store=) somewhere writable, "
                    "or --no-store"
                ) from None
        self._conn = self._connect()
        try:
            has = not readonly or has_blobs(self._conn)
        except sqlite3.Error as exc:
            self._conn.close()
            raise self._error(exc, "read") from None
        self._latest = LATEST.format(blobs="blob, blob_bytes" if has else "NULL, NULL")

    def _connect(self) -> sqlite3.Connection:
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists:
            self._check_existing()  # read-only: a file we refuse is never modified
        elif self.readonly:
            raise StoreError(f"no store at {self.path}")
        if self.readonly:
            return self._connect_readonly()
        try:
            conn = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S
            )
            prepare(conn, new=not exists)
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from None
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        try:
            conn = sqlite3.connect(
                f"{uri}?mode=ro", uri=True, check_same_thread=False, timeout=BUSY_TIMEOUT_S
            )
            conn.execute("SELECT 1 FROM sqlite_master").fetchall()
            return conn
        except sqlite3.OperationalError as exc:
            wal = self.path.with_name(self.path.name + "-wal")
            if "unable to open" not in str(exc) or (wal.exists() and wal.stat().st_size > 0):
                raise self._error(exc, "open") from None
        # No WAL to read, and SQLite cannot make its shared-memory file (read-only media):
        # read the file as it is.
        try:
            conn = sqlite3.connect(
                f"{uri}?immutable=1", uri=True, check_same_thread=False, timeout=BUSY_TIMEOUT_S
            )
            conn.execute("SELECT 1 FROM sqlite_master").fetchall()
            return conn
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from None

    def _check_existing(self) -> None:
        try:
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S
            )
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                meta = (
                    dict(
                        conn.execute(
                            "SELECT key, value FROM meta WHERE key IN "
                            "('application', 'schema_version')"
                        ).fetchall()
                    )
                    if "meta" in tables
                    else {}
                )
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if "unable to open" in str(exc) or "locked" in str(exc):
                return  # read-only media or a busy file: the real connection says more
            raise self._not_a_store(exc) from None
        except sqlite3.DatabaseError as exc:
            raise self._not_a_store(exc) from None
        if not tables:
            return  # being created by another process right now
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

    def _not_a_store(self, exc: Exception) -> StoreError:
        return StoreError(
            f"{self.path} is not a usable SQLite database ({exc}); it was left untouched. "
            "Point the store at another file"
        )

    def _error(self, exc: Exception, doing: str) -> StoreError:
        """One line for an SQLite failure while doing ``doing`` to the store."""
        text = str(exc)
        lowered = text.lower()
        if "locked" in lowered or "busy" in lowered:
            why = (
                f"it stayed locked by another process for more than {BUSY_TIMEOUT_S:g} s; "
                "let that process finish, or use another store"
            )
        elif "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
            why = "it is read-only here; pass --store PATH (store=) somewhere writable"
        elif "disk is full" in lowered:
            why = "the disk is full; free some space and try again"
        elif "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
            why = (
                "the file is damaged; recover what it holds with `sqlite3 FILE .recover`, "
                "or point the store at another file"
            )
        else:
            why = "see the SQLite error"
        return StoreError(f"cannot {doing} the store {self.path} ({text}): {why}")

    def close(self) -> None:
        self._conn.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- runs -----------------------------------------------------------------------------

    def begin(
        self,
        run_id: str,
        flow: str,
        *,
        resume: bool,
        fingerprint: Fingerprint | None = None,
    ) -> StoredOutcomes:
        """Register a run and hold its lock; when resuming, return its stored outcomes.

        One live process per run id: a run id that a live process holds is refused, naming
        it. With ``fingerprint``, a resume of a run made by another flow or other settings
        is refused; nodes whose code or params changed lose their stored results (they run
        again), each named in a ``FlowkitWarning``.
        """
        try:
            holder = self._conn.execute(
                "SELECT value FROM meta WHERE key = ?", (holder_key(run_id),)
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from None
        lock = RunLock(self.path, run_id)
        try:
            lock.acquire(holder[0] if holder else None, HOLDER_WAIT_S)
            outcomes = self._begin(run_id, flow, resume, fingerprint)
            if resume:
                self._sweep(run_id)
        except BaseException:
            lock.close()
            raise
        self._lock = lock
        return outcomes

    def _begin(
        self, run_id: str, flow: str, resume: bool, fingerprint: Fingerprint | None
    ) -> StoredOutcomes:
        conn = self._conn
        changes: list[tuple[str, str, int]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT flow FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                if resume:
                    if row is None:
                        known = [
                            r[0]
                            for r in conn.execute(
                                "SELECT run_id FROM runs ORDER BY started DESC LIMIT 10"
                            )
                        ]
                        raise UnknownRunError(
                            f"run {run_id!r} is not in {self.path}; runs there: "
                            f"{', '.join(known) or 'none'}"
                        )
                    if fingerprint is not None:
                        changes = self._check_fingerprint(run_id, fingerprint)
                    conn.execute(
                        "UPDATE runs SET status = 'running', finished = NULL WHERE run_id = ?",
                        (run_id,),
                    )
                else:
                    if row is not None:
                        raise StoreError(
                            f"run {run_id!r} already exists in {self.path}; resume it with "
                            f"resume={run_id!r} (--resume {run_id}) or choose another run id"
                        )
                    conn.execute(
                        "INSERT INTO runs VALUES (?, ?, ?, NULL, 'running')",
                        (run_id, flow, time.time()),
                    )
                if fingerprint is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO fingerprints VALUES (?, ?)",
                        (run_id, fingerprint.to_json()),
                    )
                conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    (holder_key(run_id), describe_self()),
                )
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            for path, what, count in changes:
                warnings.warn(
                    f"resuming run {run_id!r}: node {path!r} changed since its results were "
                    f"stored ({what}); its {count} stored result(s) are not reused, it runs "
                    "again",
                    FlowkitWarning,
                    stacklevel=4,
                )
            if not resume:
                return NO_OUTCOMES
            outcomes = StoredOutcomes(conn, self._error, self.blobs(run_id))
            outcomes.fill(run_id)
            return outcomes
        except sqlite3.Error as exc:
            raise self._error(exc, "start a run in") from None

    def _sweep(self, run_id: str) -> None:
        """Remove the files of large results that no latest row of ``run_id`` names: written
        by a process killed before their rows reached the writer, of a node that changed, or
        of a result stored again (its file was found missing or incomplete)."""
        blobs = self.blobs(run_id)
        if not blobs.folder.is_dir():
            return
        try:
            latest = self._conn.execute(
                f"SELECT blob FROM ({self._latest}) WHERE blob IS NOT NULL", (run_id,)
            )
            keep = {r[0] for r in latest}
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from None
        blobs.sweep(keep)

    def _check_fingerprint(
        self, run_id: str, fingerprint: Fingerprint
    ) -> list[tuple[str, str, int]]:
        """Refuse another flow; drop the results of changed nodes (inside begin's write)."""
        row = self._conn.execute(
            "SELECT value FROM fingerprints WHERE run_id = ?", (run_id,)
        ).fetchone()
        stored = Fingerprint.from_json(row[0]) if row else None
        if stored is None:
            return []  # stored by a flowkit that kept no fingerprint: nothing to compare
        refusal, changed = fingerprint.compare(stored)
        if refusal is not None:
            raise ResumeMismatchError(
                f"cannot resume run {run_id!r}: {refusal}. Resume it with the flow and "
                "settings that made it, or start a new run"
            )
        out = []
        for change in changed:
            cur = self._conn.execute(
                "DELETE FROM results WHERE run_id = ? AND node = ?", (run_id, change.path)
            )
            out.append((change.path, change.what, cur.rowcount))
        return out

    def finish(self, run_id: str, status: str, spent: dict[str, Any] | None = None) -> None:
        """Record how a run ended and, with budgets, what each spent (see ``spent``)."""
        try:
            self._conn.execute(
                "UPDATE runs SET finished = ?, status = ? WHERE run_id = ?",
                (time.time(), status, run_id),
            )
            self._conn.execute("DELETE FROM meta WHERE key = ?", (holder_key(run_id),))
            if spent:
                self._conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    (f"spent:{run_id}", json.dumps(spent)),
                )
        except sqlite3.Error as exc:
            raise self._error(exc, "finish the run in") from None

    def runs(self) -> list[RunSummary]:
        """Every run in the store, newest first, with counts of done and failed items. A run
        still marked running whose process is gone (killed, power lost) is "interrupted"."""
        out = []
        try:
            runs = self._conn.execute("SELECT * FROM runs ORDER BY started DESC").fetchall()
            for run_id, flow, started, finished, status in runs:
                done, total = self._conn.execute(
                    f"SELECT TOTAL(ok), COUNT(*) FROM ({self._latest})", (run_id,)
                ).fetchone()
                done = int(done)
                if status == "running" and not held(self.path, run_id):
                    status = "interrupted"
                out.append(RunSummary(run_id, flow, started, finished, status, done, total - done))
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from None
        return out

    def spent(self, run_id: str) -> dict[str, Any]:
        """What run ``run_id``'s budgets had spent when it last ended: budget name to
        [calls, tokens, cost] (empty when it had none)."""
        try:
            row = self._conn.execute(
                "SELECT value FROM meta WHERE key = ?", (f"spent:{run_id}",)
            ).fetchone()
            found = json.loads(row[0]) if row else {}
        except (sqlite3.Error, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def has_run(self, run_id: str) -> bool:
        """Whether ``run_id`` is in the store."""
        try:
            row = self._conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from None
        return row is not None

    def has_results(self, run_id: str) -> bool:
        """Whether the store holds at least one result (not an error record) of ``run_id``."""
        try:
            row = self._conn.execute(
                "SELECT 1 FROM results WHERE run_id = ? AND ok LIMIT 1", (run_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from None
        return row is not None

    def results(self, run_id: str, node: str | None = None) -> Iterator[StoredResult]:
        """A run's stored outcomes in (node, index) order; ``node`` filters by name or path."""
        try:
            known = self._conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,))
            if not known.fetchone():
                raise UnknownRunError(f"run {run_id!r} is not in {self.path}")
            sql = f"SELECT * FROM ({self._latest})"
            args: list[Any] = [run_id]
            if node is not None:
                sql += " WHERE node = ? OR node LIKE ?"
                args += [node, f"%/{node}"]
            blobs = Blobs(self.path, run_id)
            for n, key, index, ok, value, blob, size in self._conn.execute(
                sql + " ORDER BY node, item_index", args
            ):
                if blob is not None:
                    found = blobs.read(blob, size)
                    if found is None:
                        raise StoreError(
                            f"the stored result of {n} item {index} ({blobs.folder / blob}) is "
                            f"missing or incomplete; resume run {run_id!r} to compute it again"
                        )
                    value, raw = found
                    if raw:
                        yield StoredResult(n, key, index, bool(ok), value)
                        continue
                yield StoredResult(n, key, index, bool(ok), json.loads(value))
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from None

    def blobs(self, run_id: str) -> Blobs:
        """The files of ``run_id``'s large results."""
        return Blobs(self.path, run_id)

    # -- writing --------------------------------------------------------------------------

    async def writer(self, run_id: str) -> StoreWriter:
        """Start the writer process for ``run_id``'s results; it shares the run's lock."""
        lock = self._lock.fd if self._lock is not None else None
        return await StoreWriter.start(self, run_id, lock)


class ResumeMismatchError(StoreError):
    """A resume was refused: the run was made by another flow or other settings."""
