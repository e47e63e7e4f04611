"""Finished work is never lost: large results, a bounded buffer, signals, concurrent starts."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.store.blobs import Blobs
from flowkit.store.writer import StoreWriter

MB = 1 << 20


def stored(db: Path) -> list[tuple[int, int]]:
    """(item_index, bytes of the stored value) of every row, in index order: a large result's
    are those of its file on disk."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT item_index, run_id, length(value), blob FROM results ORDER BY item_index, rowid"
        ).fetchall()
    return [
        (index, size if blob is None else (Blobs(db, run).folder / blob).stat().st_size)
        for index, run, size, blob in rows
    ]


def writers_of(db: Path) -> list[int]:
    """Writer processes (any parent) committing to ``db``, found by their command line."""
    pids = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = path.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(p.endswith(b"writer_process.py") for p in cmd) and str(db).encode() in cmd:
            pids.append(int(path.parent.name))
    return pids


def wait_for_writers(db: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while writers_of(db):
        assert time.monotonic() < deadline, "the writer process did not finish"
        time.sleep(0.02)


class Text(fk.AsyncParallelBatchNode):
    """Item i -> ``size`` characters of text made from i."""

    max_concurrency = 4

    def __init__(self, size: int, **kw) -> None:
        super().__init__(**kw)
        self.size = size

    async def prep_async(self, shared):
        return list(range(shared["n"]))

    async def exec_async(self, item: int) -> str:
        await asyncio.sleep(0)
        return f"{item:07d}," * (self.size // 8)

    async def post_async(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


def test_large_results_are_stored_whole_and_come_back_on_resume(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r").run(Text(12 * MB), {"n": 3})
    assert stored(db) == [(i, 12 * MB // 8 * 8) for i in range(3)]  # the text itself
    shared: dict = {"n": 3}
    runner = fk.Runner(store=db, resume="r")
    runner.run(Text(12 * MB), shared)
    assert runner.last_run is not None and runner.last_run.resumed == 3
    assert shared["out"] == [f"{i:07d}," * (12 * MB // 8) for i in range(3)]


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_a_stalled_writer_holds_new_items_back(tmp_path: Path) -> None:
    """While the store is locked by another connection, the writer cannot commit: the run
    stops taking items once the writer's pipe and buffer are full, then finishes."""
    db = tmp_path / "runs.db"
    size, n = 64 * 1024, 1000
    calls: list[int] = []
    take_lock, locked, stalled_at = threading.Event(), threading.Event(), []

    class Results(Text):
        async def exec_async(self, item: int) -> str:
            calls.append(item)
            if item == 0:
                take_lock.set()
                locked.wait(10)
            return await super().exec_async(item)

    def hold_the_store() -> None:
        take_lock.wait(30)
        conn = sqlite3.connect(db, timeout=30)
        conn.execute("BEGIN IMMEDIATE")  # the writer's commits now wait
        locked.set()
        seen, since = -1, time.monotonic()
        while time.monotonic() - since < 0.5 and len(calls) < n:  # until exec stops
            if len(calls) != seen:
                seen, since = len(calls), time.monotonic()
            time.sleep(0.02)
        stalled_at.append(len(calls))
        conn.rollback()
        conn.close()

    holder = threading.Thread(target=hold_the_store)
    holder.start()
    fk.Runner(store=db, run_id="r").run(Results(size), {"n": n})
    holder.join()
    # What waits: the writer's read (16 MB, give or take a read of 1 MB), the pipe (1 MB)
    # and this process's buffer (its high-water mark), plus the items in flight.
    bound = (18 * MB + StoreWriter.HIGH_WATER) // size + 2 * 4
    assert stalled_at[0] <= bound < n, (stalled_at, bound)
    assert [i for i, _ in stored(db)] == list(range(n))


JOB = textwrap.dedent(
    """
    import asyncio, sys
    import flowkit as fk

    db, marker, size = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Big(fk.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return [0, 1, 2]

        async def exec_async(self, item) -> str:
            return str(item) * size

        async def post_async(self, shared, prep_res, exec_res):
            open(marker, "w").close()  # the results are handed over; now the signal

    class Forever(fk.AsyncNode):
        async def exec_async(self, prep_res):
            await asyncio.sleep(3600)

    big = Big()
    big >> Forever()
    fk.Runner(store=db, run_id="r").run(fk.AsyncFlow(start=big), {})
    """
)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_results_handed_over_are_committed_when_a_signal_ends_the_run(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Three 20 MB results handed to the writer, then the signal: all three are stored."""
    script, db, marker = tmp_path / "job.py", tmp_path / "runs.db", tmp_path / "posted"
    script.write_text(JOB)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(marker), str(20 * MB)],
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, sig)  # as Ctrl-C, a terminal hang-up or a service stop would
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    wait_for_writers(db)
    assert stored(db) == [(i, 20 * MB) for i in range(3)], err


STARTER = textwrap.dedent(
    """
    import os, sys, time
    import flowkit as fk

    go, ready = sys.argv[1], sys.argv[2]

    class Square(fk.BatchNode):
        def prep(self, shared):
            return [1, 2, 3]

        def exec(self, item):
            return item * item

    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)
    fk.Runner(store=".flowkit/runs.db").run(Square(), {})
    """
)


def test_twenty_runs_starting_at_once_on_a_new_store_all_succeed(tmp_path: Path) -> None:
    script, go = tmp_path / "start.py", tmp_path / "go"
    script.write_text(STARTER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(go), str(tmp_path / f"ready{k}")],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(20)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready*"))) < 20:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go.touch()  # all imported: they open the new store at the same moment
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, errors
    with sqlite3.connect(tmp_path / ".flowkit" / "runs.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (20,)
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone() == (60,)
