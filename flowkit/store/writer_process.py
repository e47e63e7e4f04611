"""The checkpoint store's writer process: reads groups of rows on stdin, commits them to SQLite.

Run by ``flowkit.store.StoreWriter`` as ``python -I -S writer_process.py DB RUN_ID``; it uses the
standard library only, so it starts in milliseconds. In its own process it never waits for the
event loop's GIL, so a busy loop cannot hold results back from the disk.

Each line on stdin is ``OK <tab> NODE (a JSON string) <tab> [[item_key, item_index, value],
...]``. Whatever has arrived when the last commit ends goes into the next transaction, one
insert per node (split so no statement holds more than ``MAX_STATEMENT`` bytes). A line is
gathered from the pipe's reads in a list and joined once, so a 100 MB result costs linear
time. On end of input (the run closed it, or the run's process died) it commits what it has
and exits 0; on a database error it prints one line saying what went wrong (a full disk, a
store locked by another process, a read-only store) and exits 1. It runs in a session of its
own, so Ctrl-C, which reaches the run's process group, cannot cut it short. It inherits the
run's lock (``flowkit.store.lock``) and holds it until it exits.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time

# SQLite unpacks each JSON array itself, and ``->`` keeps every value's JSON text as written.
# SQLite's JSON has no NaN or Infinity, so rows holding them go with each value as a JSON
# string instead, read back with ``->>``.
INSERT = (
    "INSERT INTO results SELECT ?1, ?2, value ->> 0, value ->> 1, ?3, value -> 2, ?4 "
    "FROM json_each(?5)"
)
INSERT_TEXT = INSERT.replace("value -> 2", "value ->> 2")
PAUSE = float(os.environ.get("PAUSE", "0.002"))
MAX_STATEMENT = 64 << 20
LOCK_TIMEOUT = float(os.environ.get("FLOWKIT_STORE_TIMEOUT", "60"))


def statements(lines: list[bytes], run_id: str) -> list[tuple[str, tuple[object, ...]]]:
    """Inserts for ``lines``: one per (node, ok), their JSON arrays joined, each statement
    holding at most about ``MAX_STATEMENT`` bytes."""
    merged: dict[tuple[bytes, bytes], list[list[bytes]]] = {}
    sizes: dict[tuple[bytes, bytes], int] = {}
    for line in lines:
        ok, node, rows = line.split(b"\t", 2)
        if rows == b"[]":
            continue
        groups = merged.setdefault((node, ok), [[]])
        if groups[-1] and sizes.get((node, ok), 0) + len(rows) > MAX_STATEMENT:
            groups.append([])
            sizes[(node, ok)] = 0
        groups[-1].append(rows[1:-1])
        sizes[(node, ok)] = sizes.get((node, ok), 0) + len(rows)
    now = time.time()
    out: list[tuple[str, tuple[object, ...]]] = []
    for (node, ok), groups in merged.items():
        for parts in groups:
            rows = b"[" + b",".join(parts) + b"]"
            sql = INSERT
            text = rows.decode()
            if b"NaN" in rows or b"Infinity" in rows:
                sql = INSERT_TEXT
                text = json.dumps(
                    [[key, index, json.dumps(v)] for key, index, v in json.loads(text)]
                )
            out.append((sql, (run_id, json.loads(node), int(ok), now, text)))
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
    parts: list[bytes] = []  # the start of a line whose end has not arrived
    while True:
        chunk = os.read(0, 1 << 22)
        end = chunk.rfind(b"\n")
        lines: list[bytes] = []
        if end < 0:
            if chunk:
                parts.append(chunk)
        else:
            parts.append(chunk[:end])
            lines = b"".join(parts).split(b"\n")
            parts = [chunk[end + 1 :]] if end + 1 < len(chunk) else []
        if lines:
            try:
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    for sql, args in statements(lines, run_id):
                        conn.execute(sql, args)
            except (sqlite3.Error, OSError, MemoryError) as exc:
                print(explain(path, exc), file=sys.stderr)
                return 1
        if not chunk:
            conn.close()
            return 0
        if lines:
            # Let the next groups gather in the pipe: a write to a pipe nobody is blocked on
            # wakes no one, which is what keeps the run's cost per group low.
            time.sleep(PAUSE)


if __name__ == "__main__":
    sys.exit(main())
