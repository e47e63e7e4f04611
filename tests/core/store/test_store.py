"""Durable runs: results checkpointed in SQLite as they land, resume, crash safety."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

import flowkit as fk
from flowkit.errors import FlowkitWarning
from flowkit.store import Store, StoreError, UnknownRunError


class Score(BaseModel):
    item: int
    square: int


class Squares(fk.AsyncParallelBatchNode):
    max_concurrency = 4

    def __init__(self, calls: list[int], fail_on: frozenset[int] = frozenset(), **kw) -> None:
        super().__init__(**kw)
        self.calls, self.fail_on = calls, fail_on

    async def prep_async(self, shared):
        return shared["items"]

    async def exec_async(self, item: int) -> Score:
        self.calls.append(item)
        await asyncio.sleep(0)
        if item in self.fail_on:
            raise RuntimeError(f"cannot score {item}")
        return Score(item=item, square=item * item)

    async def post_async(self, shared, prep_res, exec_res):
        shared["scores"] = exec_res


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT run_id, node, item_index, ok, value FROM results ORDER BY item_index"
        ).fetchall()


def test_each_result_is_written_under_run_node_path_and_key(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    flow = fk.AsyncFlow(start=Squares([]), name="job")
    fk.Runner(store=db, run_id="r1").run(flow, {"items": [3, 1, 2]})
    got = rows(db)
    assert [(r[0], r[1], r[2], r[3]) for r in got] == [
        ("r1", "job/Squares", 0, 1),
        ("r1", "job/Squares", 1, 1),
        ("r1", "job/Squares", 2, 1),
    ]
    assert json.loads(got[0][4]) == {"item": 3, "square": 9}


def test_resume_reuses_stored_results_and_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    items = list(range(20))
    first: list[int] = []
    with pytest.raises(RuntimeError, match="cannot score 13"):
        fk.Runner(store=db, run_id="r").run(
            Squares(first, frozenset({13}), max_concurrency=1), {"items": items}
        )
    assert first == list(range(14))
    again: list[int] = []
    shared: dict = {"items": items}
    runner = fk.Runner(store=db, resume="r")
    runner.run(Squares(again), shared)
    assert sorted(again) == list(range(13, 20))  # the failed item is retried, nothing else reruns
    clean: dict = {"items": items}
    fk.Runner().run(Squares([]), clean)
    assert shared == clean
    assert all(isinstance(s, Score) for s in shared["scores"])
    assert runner.last_run is not None and runner.last_run.resumed == 13


def test_int_items_are_their_own_key_and_other_content_is_hashed(tmp_path: Path) -> None:
    class Echo(fk.BatchNode):
        def prep(self, shared):
            return [7, "7", 10**40, [7]]

        def exec(self, item):
            return 1

    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r").run(Echo(), {})
    with sqlite3.connect(db) as conn:
        keys = [k for (k,) in conn.execute("SELECT item_key FROM results ORDER BY item_index")]
    assert keys[0] == "7"
    assert all(re.fullmatch("[0-9a-f]{32}", k) for k in keys[1:])
    assert len(set(keys)) == 4


def test_changed_items_run_again(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r").run(Squares([]), {"items": [1, 2, 3]})
    calls: list[int] = []
    fk.Runner(store=db, resume="r").run(Squares(calls), {"items": [1, 2, 30]})
    assert calls == [30]


def test_failed_items_are_retried_on_resume_unless_skipped(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r").run(
        Squares([], frozenset({2}), on_error="collect"), {"items": [1, 2, 3]}
    )
    assert [r[3] for r in rows(db)] == [1, 0, 1]
    skipped: list[int] = []
    shared: dict = {"items": [1, 2, 3]}
    fk.Runner(store=db, resume="r", skip_failed=True).run(
        Squares(skipped, on_error="collect"), shared
    )
    assert skipped == []
    assert isinstance(shared["scores"][1], fk.ErrorRecord)
    retried: list[int] = []
    fk.Runner(store=db, resume="r").run(Squares(retried), {"items": [1, 2, 3]})
    assert retried == [2]


def test_results_keep_their_annotated_types(tmp_path: Path) -> None:
    class Pairs(fk.BatchNode):
        def prep(self, shared):
            return [1, 2]

        def exec(self, item) -> tuple[int, str]:
            return (item, str(item))

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r").run(Pairs(), {})
    shared: dict = {}
    fk.Runner(store=db, resume="r").run(Pairs(), shared)
    assert shared["out"] == [(1, "1"), (2, "2")]


class Odd(fk.BatchNode):
    """Results JSON has no plain spelling for: NaN, infinities, bytes, sets."""

    def prep(self, shared):
        return [0, 1, 2]

    def exec(self, item):
        values = [math.nan, math.inf, -math.inf]
        return {"x": values[item], "raw": bytes([item, 255]), "tags": {"b", "a"}}

    def post(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


class Floats(Odd):
    def exec(self, item) -> dict[str, float]:
        return {"x": [math.nan, math.inf, -math.inf][item], "y": 0.5}


def test_nan_infinities_bytes_and_sets_are_stored_and_restored(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    for node, run_id in ((Odd(), "plain"), (Floats(), "typed")):
        fk.Runner(store=db, run_id=run_id).run(node, {})
        calls: list[int] = []
        node.exec = lambda item, calls=calls: calls.append(item)  # type: ignore[method-assign]
        shared: dict = {}
        fk.Runner(store=db, resume=run_id).run(node, shared)
        assert calls == []  # every result came back from the store
        xs = [r["x"] for r in shared["out"]]
        assert math.isnan(xs[0]) and xs[1:] == [math.inf, -math.inf]
        if run_id == "plain":
            assert [r["raw"] for r in shared["out"]] == ["00ff", "01ff", "02ff"]  # hex
            assert sorted(shared["out"][0]["tags"]) == ["a", "b"]


def test_annotated_bytes_come_back_as_the_same_bytes(tmp_path: Path) -> None:
    calls: list[int] = []

    class Raw(fk.BatchNode):
        def prep(self, shared):
            return [0, 1]

        def exec(self, item) -> tuple[bytes, list[bytes], dict[str, bytes]]:
            calls.append(item)
            data = bytes([item, 255, 0])
            return data, [data], {"k": data}

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r").run(Raw(), {})
    calls.clear()
    shared: dict = {}
    fk.Runner(store=db, resume="r").run(Raw(), shared)
    assert calls == []  # both came back from the store, as the bytes exec returned
    assert shared["out"] == [
        (bytes([i, 255, 0]), [bytes([i, 255, 0])], {"k": bytes([i, 255, 0])}) for i in (0, 1)
    ]


def test_a_stored_result_that_no_longer_fits_the_annotation_runs_again(tmp_path: Path) -> None:
    class V1(fk.BatchNode):
        name = "Scores"

        def prep(self, shared):
            return [1, 2]

        def exec(self, item) -> str:
            return f"score {item}"

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    class V2(V1):
        name = "Scores"

        def exec(self, item) -> int:
            return item * 10

    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r").run(V1(), {})
    shared: dict = {}
    with pytest.warns(FlowkitWarning, match="node 'Scores' changed since its results were stored"):
        fk.Runner(store=db, resume="r").run(V2(), shared)
    assert shared["out"] == [10, 20]


def test_results_reach_the_disk_while_exec_keeps_the_event_loop_busy(tmp_path: Path) -> None:
    """exec blocks the loop (25 ms of work, never awaiting); earlier results still land."""
    db = tmp_path / "runs.db"

    def committed() -> int:
        with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM results").fetchone()[0]

    seen: list[int] = []

    class Busy(fk.AsyncParallelBatchNode):
        max_concurrency = 1

        async def prep_async(self, shared):
            return list(range(10))

        async def exec_async(self, item: int) -> int:
            if item == 9:  # wait, still blocking the loop, for items 0-7 to be on disk
                deadline = time.monotonic() + 20
                while committed() < 8 and time.monotonic() < deadline:
                    time.sleep(0.01)
            else:
                time.sleep(0.025)
            seen.append(committed())
            return item

    fk.Runner(store=db, run_id="r").run(Busy(), {})
    assert seen[9] >= 8, seen
    assert committed() == 10


def writer_pids() -> list[int]:
    """This process's checkpoint writer processes, found by their command line."""
    pids = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = path.read_bytes().split(b"\0")
            stat = (path.parent / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and any(part.endswith(b"writer_process.py") for part in cmd):
            pids.append(int(path.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_writer_that_dies_fails_the_run_with_the_store_named(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"

    class KillsWriter(fk.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return list(range(50))

        async def exec_async(self, item: int) -> int:
            if item == 10:
                [pid] = writer_pids()
                os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.002)
            return item

    with pytest.raises(StoreError, match=f"writing to {re.escape(str(db))} failed"):
        fk.Runner(store=db, run_id="r").run(KillsWriter(), {})
    assert writer_pids() == []


CTRL_C = textwrap.dedent(
    """
    import asyncio, sys
    import flowkit as fk

    db, log_path = sys.argv[1:3]
    log = open(log_path, "a", buffering=1)

    class Work(fk.AsyncParallelBatchNode):
        max_concurrency = 4

        async def prep_async(self, shared):
            return list(range(100000))

        async def exec_async(self, i) -> int:
            await asyncio.sleep(0.002)
            log.write(f"{i}\\n")
            return i

    fk.Runner(store=db, run_id="r").run(Work(), {})
    """
)


def test_ctrl_c_keeps_every_finished_result(tmp_path: Path) -> None:
    """Ctrl-C signals the whole process group: the run stops, the writer must not."""
    script, db, log = tmp_path / "job.py", tmp_path / "runs.db", tmp_path / "done.log"
    script.write_text(CTRL_C)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(log)],
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while (not log.exists() or len(log.read_text().split()) < 300) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err and "StoreError" not in err, err
    done = {int(i) for i in log.read_text().split()}
    assert len(done) >= 300
    assert {r[2] for r in rows(db)} == done


FORKED = textwrap.dedent(
    """
    import sys
    import flowkit as fk

    class Square(fk.BatchNode):
        executor = "process"

        def prep(self, shared):
            return list(range(40))

        def exec(self, item) -> int:
            return item * item

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared = {}
    fk.Runner(store=sys.argv[1], run_id="r", process_workers=2, start_method="fork").run(
        Square(), shared
    )
    assert shared["out"] == [i * i for i in range(40)]
    """
)


def test_forked_process_workers_do_not_hold_the_writer_open(tmp_path: Path) -> None:
    """Workers forked during a run inherit its pipe to the writer unless flowkit closes it."""
    script, db = tmp_path / "job.py", tmp_path / "runs.db"
    script.write_text(FORKED)
    done = subprocess.run([sys.executable, str(script), str(db)], timeout=60)
    assert done.returncode == 0
    assert sorted(r[2] for r in rows(db)) == list(range(40))


def test_a_result_that_is_not_json_names_the_node_and_can_opt_out(tmp_path: Path) -> None:
    class Opaque(fk.Node):
        def exec(self, prep_res):
            return object()

    with pytest.raises(
        StoreError, match="Opaque: exec returned object for item 0, which cannot be"
    ):
        fk.Runner(store=tmp_path / "a.db").run(Opaque(), {})
    fk.Runner(store=tmp_path / "b.db").run(Opaque(checkpoint=False), {})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a database at all" * 100, "not a usable SQLite database"),
        (None, "did not create"),
    ],
)
def test_corrupt_or_foreign_files_are_refused_and_left_untouched(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    db = tmp_path / "x.db"
    if content is None:
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE invoices (id INTEGER)")
    else:
        db.write_bytes(content)
    before = db.read_bytes()
    with pytest.raises(StoreError, match=message):
        fk.Runner(store=db).run(Squares([]), {"items": [1]})
    assert db.read_bytes() == before


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    Store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema 99, newer than"):
        Store(db)


def test_runs_and_results_can_be_listed(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="a").run(
        Squares([], frozenset({2}), on_error="collect"), {"items": [1, 2]}
    )
    store = Store(db)
    [summary] = store.runs()
    assert (summary.run_id, summary.flow, summary.status, summary.done, summary.failed) == (
        "a",
        "Squares",
        "done",
        1,
        1,
    )
    results = list(store.results("a", node="Squares"))
    assert [(r.index, r.ok) for r in results] == [(0, True), (1, False)]
    assert results[1].value["error_type"] == "RuntimeError"
    with pytest.raises(UnknownRunError):
        list(store.results("nope"))
    with pytest.raises(UnknownRunError, match="runs there: a"):
        fk.Runner(store=db, resume="nope").run(Squares([]), {"items": [1]})


def test_memory_guard_holds_new_items_while_memory_is_high() -> None:
    in_flight = peak = 0

    class Items(fk.AsyncParallelBatchNode):
        max_concurrency = 8

        async def prep_async(self, shared):
            return range(6)

        async def exec_async(self, item):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    events: list = []
    runner = fk.Runner(max_rss_mb=1, on_event=events.append)  # always above 1 MB
    runner.run(Items(), {})
    assert runner.last_run is not None
    assert runner.last_run.memory_guard_engaged == 1
    assert [e.kind for e in events].count("memory_guard") == 1
    assert peak == 1  # admitted one at a time while the guard held


CRASHY = textwrap.dedent(
    """
    import asyncio, json, random, sys
    import flowkit as fk

    db, run_id, resume, log_path, out_path = sys.argv[1:6]
    log = open(log_path, "a", buffering=1)

    class Work(fk.AsyncParallelBatchNode):
        max_concurrency = 8

        async def prep_async(self, shared):
            return list(range(10000))

        async def exec_async(self, i) -> list[int]:
            log.write(f"{i}\\n")
            await asyncio.sleep(random.uniform(0.001, 0.004))
            return [i, i * i % 97]

        async def post_async(self, shared, prep_res, exec_res):
            shared["results"] = exec_res

    shared = {}
    runner = fk.Runner(store=db, **({"resume": run_id} if resume == "1" else {"run_id": run_id}))
    runner.run(fk.AsyncFlow(start=Work()), shared)
    open(out_path, "w").write(json.dumps(shared["results"]))
    """
)


def test_sigkill_at_random_moments_loses_only_in_flight_items(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(CRASHY)
    db, log, out = tmp_path / "runs.db", tmp_path / "exec.log", tmp_path / "out.json"
    rng = random.Random(1234)
    kills = 0
    resume = "0"
    while True:
        seen = len(log.read_text().split()) if log.exists() else 0
        proc = subprocess.Popen(
            [sys.executable, str(script), str(db), "run", resume, str(log), str(out)]
        )
        if kills < 12:
            # Kill at a random moment once this launch is executing items.
            while proc.poll() is None and (
                not log.exists() or len(log.read_text().split()) == seen
            ):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.2))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                with sqlite3.connect(db) as conn:
                    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                resume = "1"
                continue
        assert proc.wait(timeout=120) == 0
        break
    assert kills >= 10
    executions = len(log.read_text().split())
    re_executed = executions - 10000
    assert json.loads(out.read_text()) == [[i, i * i % 97] for i in range(10000)]
    # Each kill may lose the items in flight (8) plus those finished during the last commit.
    assert 0 <= re_executed <= kills * 16, (kills, re_executed)
