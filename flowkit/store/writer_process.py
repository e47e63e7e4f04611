"""The checkpoint store's writer process: reads groups of rows on stdin, commits them to SQLite.

Run by ``flowkit.store.StoreWriter`` as ``python -I -S writer_process.py DB RUN_ID``; it uses the
standard library only, so it starts in milliseconds. In its own process it never waits for the
event loop's GIL, so a busy loop cannot hold results back from the disk.

Each line on stdin is ``OK <tab> NODE (a JSON string) <tab> [[item_key, item_index, value],
...]``. Whatever has arrived when the last commit ends goes into the next transaction, one
insert per node. On end of input (the run closed it, or the run's process died) it commits
what it has and exits 0; on a database error it prints the error and exits 1. It runs in a
session of its own, so Ctrl-C, which reaches the run's process group, cannot cut it short.
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


def statements(lines: list[bytes], run_id: str) -> list[tuple[str, tuple[object, ...]]]:
    """One insert per (node, ok) for ``lines``, their JSON arrays joined."""
    merged: dict[tuple[bytes, bytes], list[bytes]] = {}
    for line in lines:
        ok, node, rows = line.split(b"\t", 2)
        if rows != b"[]":
            merged.setdefault((node, ok), []).append(rows[1:-1])
    now = time.time()
    out: list[tuple[str, tuple[object, ...]]] = []
    for (node, ok), parts in merged.items():
        rows = b"[" + b",".join(parts) + b"]"
        sql = INSERT
        text = rows.decode()
        if b"NaN" in rows or b"Infinity" in rows:
            sql = INSERT_TEXT
            text = json.dumps([[key, index, json.dumps(v)] for key, index, v in json.loads(text)])
        out.append((sql, (run_id, json.loads(node), int(ok), now, text)))
    return out


def main() -> int:
    path, run_id = sys.argv[1], sys.argv[2]
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    conn.execute("PRAGMA synchronous=NORMAL")
    pending = b""
    while True:
        chunk = os.read(0, 1 << 22)
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        if lines:
            try:
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    for sql, args in statements(lines, run_id):
                        conn.execute(sql, args)
            except sqlite3.Error as exc:
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
                return 1
        if not chunk:
            conn.close()
            return 0
        # Let the next groups gather in the pipe: a write to a pipe nobody is blocked on
        # wakes no one, which is what keeps the run's cost per group low.
        time.sleep(PAUSE)


if __name__ == "__main__":
    sys.exit(main())
