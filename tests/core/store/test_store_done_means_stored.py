"""An item counts as done only once the store's writer has it: a count that a run shows
(progress, RunInfo) never runs ahead of what a kill -9 leaves stored."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

JOB = textwrap.dedent(
    """
    import os, signal, sys, time
    import flowkit as fk
    from flowkit.events import CallStarted, Observer

    class Shout(Observer):
        def start(self, info):
            self.info = info

        def __call__(self, event):
            if isinstance(event, CallStarted):
                done = self.info.nodes["Busy"].items
                os.write(1, f"{event.index} {done}\\n".encode())

    class Busy(fk.BatchNode):
        def prep(self, shared):
            return range(20)

        def exec(self, item):  # blocks the event loop, never awaits
            if item == 5:
                os.kill(os.getpid(), signal.SIGKILL)
            end = time.perf_counter() + 0.03
            while time.perf_counter() < end:
                pass
            return item

    fk.Runner(store=sys.argv[1], run_id="r", on_event=Shout(), progress=False,
              detect_blocking=None).run(Busy(), {})
    """
)


def test_a_kill_leaves_at_least_as_many_results_stored_as_the_run_counted_done(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    done = subprocess.run(
        [sys.executable, "-c", JOB, str(db)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -9
    shown = [tuple(map(int, line.split())) for line in done.stdout.split("\n") if line]
    index, counted = shown[-1]
    assert index == 5 and counted >= 4  # results are handed over as the run goes
    deadline = time.monotonic() + 10  # the writer outlives the run and commits what it has
    while True:
        with sqlite3.connect(db) as conn:
            stored = conn.execute("SELECT COUNT(*) FROM results WHERE ok = 1").fetchone()[0]
        if stored >= counted or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert stored >= counted
