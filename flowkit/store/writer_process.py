"""The checkpoint store's writer process: reads groups of rows on stdin, commits them to SQLite.

Run by ``flowkit.store.StoreWriter`` as ``python -I -S writer_process.py DB RUN_ID``; it uses the
standard library only, so it starts in milliseconds. In its own process it never waits for the
event loop's GIL, so a busy loop cannot hold results back from the disk.

Each line on stdin is ``FLAGS <tab> NODE (a JSON string) <tab> [[item_key, item_index, value],
...]``, where FLAGS is 1 for results and 0 for error records, plus 2 for rows of results
stored as files beside the store, ``[item_key, item_index, file name, size]`` (written whole
by the run before their rows were sent). Whatever has arrived when the last commit ends goes
into the next transaction, one insert per node and kind (split so no statement holds more
than ``MAX_STATEMENT`` bytes). A line is gathered from the pipe's reads into one buffer, so a
large group costs linear time. On end of input (the run closed it, or the run's process
died) it commits what it has and exits 0; on a database error it prints one line saying
what went wrong (a full disk, a store locked by another process, a read-only store) and
exits 1. It runs in a session of its
own, so Ctrl-C, which reaches the run's process group, cannot cut it short. It inherits the
run's lock (``flowkit.store.lock``) and holds it until it exits.
"""

from __future__ import annotations

import json
import os
import select
import sqlite3
import sys
import time

# SQLite unpacks each JSON array itself, and ``->`` keeps every value's JSON text as written.
# SQLite's JSON has no NaN or Infinity, so rows holding them go with each value as a JSON
# string instead, read back with ``->>``.
COLUMNS = "run_id, node, item_key, item_index, ok, written, value"
INSERT = (
    f"INSERT INTO results ({COLUMNS}) SELECT ?1, ?2, value ->> 0, value ->> 1, ?3, ?4, "
    "value -> 2 FROM json_each(?5)"
)
INSERT_TEXT = INSERT.replace("value -> 2", "value ->> 2")
INSERT_BLOBS = (
    f"INSERT INTO results ({COLUMNS}, blob, blob_bytes) SELECT ?1, ?2, value ->> 0, "
    "value ->> 1, ?3, ?4, '', value ->> 2, value ->> 3 FROM json_each(?5)"
)
PAUSE = float(os.environ.get("PAUSE", "0.002"))
MAX_STATEMENT = 64 << 20
BUFFER = 1 << 21
GATHER = 16 << 20
LOCK_TIMEOUT = 12 * float(os.environ.get("FLOWKIT_STORE_BUSY_S", "5"))


def statements(
    buf: bytearray, lines: list[tuple[int, int]], run_id: str
) -> list[tuple[str, tuple[object, ...]]]:
    """Inserts for the lines at ``(start, end)`` in ``buf``: one per (node, flags), their JSON
    arrays joined, each statement holding at most about ``MAX_STATEMENT`` bytes."""
    view = memoryview(buf)
    merged: dict[tuple[bytes, bytes], list[list[memoryview]]] = {}
    sizes: dict[tuple[bytes, bytes], int] = {}
    out: list[tuple[str, tuple[object, ...]]] = []
    now = time.time()
    for start, end in lines:
        tab = buf.index(b"\t", start, end)
        second = buf.index(b"\t", tab + 1, end)
        flags, node = bytes(view[start:tab]), bytes(view[tab + 1 : second])
        rows = view[second + 1 : end]
        if rows == b"[]":
            continue
        groups = merged.setdefault((node, flags), [[]])
        if groups[-1] and sizes.get((node, flags), 0) + len(rows) > MAX_STATEMENT:
            groups.append([])
            sizes[(node, flags)] = 0
        groups[-1].append(rows[1:-1])
        sizes[(node, flags)] = sizes.get((node, flags), 0) + len(rows)
    for (node, flags), groups in merged.items():
        kind = int(flags)
        for parts in groups:
            joined = b"[" + b",".join(parts) + b"]"
            sql = INSERT_BLOBS if kind & 2 else INSERT
            text = joined.decode()
            if sql is INSERT and (b"NaN" in joined or b"Infinity" in joined):
                sql = INSERT_TEXT
                text = json.dumps(
                    [[key, index, json.dumps(v)] for key, index, v in json.loads(text)]
                )
            out.append((sql, (run_id, json.loads(node), kind & 1, now, text)))
    return out


def explain(path: str, exc: BaseException) -> str:
    """One line saying why writing to the store at ``path`` failed, and what to do."""
    text = str(exc)
    lowered = text.lower()
    if "disk is full" in lowered or "no space" in lowered or "too large" in lowered:
        return (
            f"the disk holding {path} is full ({text}); free some space, then resume the "
            "run: what was committed before is kept"
        )
    if "locked" in lowered or "busy" in lowered:
        return (
            f"{path} stayed locked by another process for {LOCK_TIMEOUT:g} s ({text}); let "
            "it finish or use another store"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return f"{path} is read-only ({text}); use a store in a writable place"
    return f"{type(exc).__name__}: {text}"


def main() -> int:
    path, run_id = sys.argv[1], sys.argv[2]
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=LOCK_TIMEOUT)
        conn.execute("PRAGMA synchronous=NORMAL")
    except (sqlite3.Error, OSError) as exc:
        print(explain(path, exc), file=sys.stderr)
        return 1
    # Stdin is read into one buffer, reused and grown as lines need: a line arrives in many
    # reads (a pipe holds 1 MB), so a 100 MB result costs no more than its size.
    buf = bytearray(BUFFER)
    filled = 0
    ready = select.poll()
    ready.register(0, select.POLLIN)
    while True:
        if filled == len(buf):
            buf.extend(bytes(len(buf)))
        n = os.readv(0, [memoryview(buf)[filled:]])
        first = filled
        filled += n
        # Whatever else is waiting joins this transaction (fewer, larger commits).
        while n and filled - first < GATHER and ready.poll(0):
            if filled == len(buf):
                buf.extend(bytes(len(buf)))
            more = os.readv(0, [memoryview(buf)[filled:]])
            if not more:
                break
            filled += more
        last = buf.rfind(b"\n", first, filled)
        if last >= 0:
            lines, start = [], 0
            while start <= last:
                end = buf.index(b"\n", start, last + 1)
                lines.append((start, end))
                start = end + 1
            try:
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    for sql, args in statements(buf, lines, run_id):
                        conn.execute(sql, args)
            except (sqlite3.Error, OSError, MemoryError, ValueError) as exc:
                print(explain(path, exc), file=sys.stderr)
                return 1
            rest = filled - last - 1
            if len(buf) > 4 * GATHER and rest < BUFFER:  # after a large line: give it back
                buf = bytearray(buf[last + 1 : filled]) + bytearray(BUFFER)
            else:
                buf[:rest] = buf[last + 1 : filled]
                if len(buf) < BUFFER:
                    buf.extend(bytes(BUFFER - len(buf)))
            filled = rest
        if n == 0:
            conn.close()
            return 0
        if last >= 0 and n < 1 << 16:
            # Let the next groups gather in the pipe: a write to a pipe nobody is blocked on
            # wakes no one, which is what keeps the run's cost per group low. (After a large
            # read, more is surely waiting: no pause.)
            time.sleep(PAUSE)


if __name__ == "__main__":
    sys.exit(main())
