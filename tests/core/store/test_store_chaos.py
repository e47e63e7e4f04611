"""Chaos: a real ``flowkit run`` with a store is ended by a random signal at a random moment,
again and again, then resumed to the end. Afterwards every item is stored exactly once and
no planted secret appears in any file written or anything printed.

Executors are a parameter: the event loop, threads and worker processes; no process of the
run (its workers, a forkserver) may be left once it has ended.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

EXECUTORS = ["async", "thread", "process"]
ROUNDS = 5
ITEMS = 1500
KEY = "chaosplanted5Hq8Wz"
PASSWORD = "chaospw3Nx7Lr"

FLOW = textwrap.dedent(
    """
    import asyncio, os, random, time
    import flowkit as fk

    def fail_or_value(item):
        if item % 97 == 5:  # a failure whose message holds the key and a URL's password
            raise PermissionError(
                f"item {item}: denied for key {os.environ['OPENAI_API_KEY']} at "
                f"http://svc:{os.environ['CHAOS_DB_PASSWORD']}@db.internal/items"
            )
        return {"item": item, "square": item * item}

    class AsyncWork(fk.AsyncParallelBatchNode):
        max_concurrency = 8
        on_error = "collect"

        async def prep_async(self, shared):
            return list(range(ITEMS))

        async def exec_async(self, item):
            with open("started.log", "a") as log:
                log.write(f"{item}\\n")
            await asyncio.sleep(random.uniform(0.001, 0.005))
            return fail_or_value(item)

    class ThreadWork(fk.BatchNode):
        executor = "thread"
        max_concurrency = 8
        on_error = "collect"

        def prep(self, shared):
            return list(range(ITEMS))

        def exec(self, item):
            with open("started.log", "a") as log:
                log.write(f"{item}\\n")
            time.sleep(random.uniform(0.001, 0.005))
            return fail_or_value(item)

    class ProcessWork(ThreadWork):
        executor = "process"
        max_concurrency = 2

    ITEMS = int(os.environ["CHAOS_ITEMS"])
    flows = {"async": AsyncWork, "thread": ThreadWork, "process": ProcessWork}
    work = flows[os.environ["CHAOS_EXECUTOR"]]()
    """
)


def writers_of(db: Path) -> list[int]:
    pids = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = path.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(p.endswith(b"writer_process.py") for p in cmd) and str(db).encode() in cmd:
            pids.append(int(path.parent.name))
    return pids


def left_behind(folder: Path) -> list[str]:
    """Live processes started from ``folder`` (the run's workers, a forkserver)."""
    found = []
    for path in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (path / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(path / "cwd")
            state = (path / "stat").read_text().split(") ")[1][0]
        except OSError:
            continue
        if cwd == str(folder) and state != "Z":
            found.append(cmd)
    return found


def started(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
@pytest.mark.parametrize("executor", EXECUTORS)
def test_random_signals_then_resume_store_every_item_once_and_leak_nothing(
    executor: str, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    (tmp_path / "chaos_flow.py").write_text(FLOW)
    db, log = tmp_path / ".flowkit" / "runs.db", tmp_path / "started.log"
    env = {
        **os.environ,
        "OPENAI_API_KEY": KEY,
        "CHAOS_DB_PASSWORD": PASSWORD,
        "CHAOS_ITEMS": str(ITEMS),
        "CHAOS_EXECUTOR": executor,
    }
    printed: list[str] = []
    signals = []
    for round_ in range(ROUNDS + 1):
        args = ["--run-id", "r"] if round_ == 0 else ["--resume", "r", "--skip-failed"]
        before = started(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowkit.cli", "run", "chaos_flow:work", "--no-progress", *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        if round_ < ROUNDS:
            deadline = time.monotonic() + 60
            while proc.poll() is None and started(log) == before:  # it is running items
                assert time.monotonic() < deadline
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.25))
            sig = rng.choice([signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
            signals.append(sig.name)
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=120)
        printed += [out, err]
        deadline = time.monotonic() + 60
        while writers_of(db):  # the writer commits what it was handed, then exits
            assert time.monotonic() < deadline, "a writer process did not finish"
            time.sleep(0.01)
        deadline = time.monotonic() + 2  # nothing else of the run outlives it by 2 s
        while left_behind(tmp_path):
            assert time.monotonic() < deadline, left_behind(tmp_path)
            time.sleep(0.02)
        if round_ == ROUNDS:  # the last one runs to the end
            assert proc.returncode in (0, 1) and "run r (" in out, (out, err)
    context = f"seed {seed}, signals {signals}"
    with sqlite3.connect(db) as conn:
        counts = conn.execute(
            "SELECT item_index, COUNT(*), SUM(ok) FROM results GROUP BY item_index "
            "ORDER BY item_index"
        ).fetchall()
    assert [i for i, _, _ in counts] == list(range(ITEMS)), context
    assert {n for _, n, _ in counts} == {1}, context  # each item stored exactly once
    assert [i for i, _, ok in counts if not ok] == [i for i in range(ITEMS) if i % 97 == 5]
    leaked = [
        str(path)
        for path in tmp_path.rglob("*")
        if path.is_file()
        and any(secret.encode() in path.read_bytes() for secret in (KEY, PASSWORD))
    ]
    leaked += [f"printed: {text[:200]}" for text in printed if KEY in text or PASSWORD in text]
    assert leaked == [], context
