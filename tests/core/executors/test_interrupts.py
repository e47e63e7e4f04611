"""Nothing left behind: worker processes die with the process that started them, whatever
signal ends it, and Ctrl-C ends a run whose threads are stuck in blocking calls at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

BUSY_WORKERS = textwrap.dedent(
    """
    import os, sys, time
    import flowkit as fk

    class Spin(fk.BatchNode):
        executor = "process"

        def prep(self, shared):
            return range(4)

        def exec(self, item):
            open(os.path.join(sys.argv[1], f"{os.getpid()}.pid"), "w").close()
            end = time.time() + 60
            while time.time() < end:
                pass

    if __name__ == "__main__":
        fk.Runner(start_method=sys.argv[2], process_workers=2, progress=False).run(Spin(), {})
    """
)


def start(script: str, *args: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    path = tmp_path / "job.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(path), *args], env=env, stderr=subprocess.PIPE, cwd=tmp_path
    )


def started_from(folder: Path) -> list[str]:
    """Command lines of live processes that name ``folder`` (the job, a forkserver)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().split(") ")[1][0]
        except OSError:
            continue
        if str(folder) in cmdline and state != "Z":
            found.append(cmdline)
    return found


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_busy_workers_are_gone_within_2_s_of_their_parents_death(
    tmp_path: Path, alive: Callable[[int], bool], start_method: str, sig: signal.Signals
) -> None:
    job = start(BUSY_WORKERS, str(tmp_path), start_method, tmp_path=tmp_path)
    try:
        assert wait_for(lambda: len(list(tmp_path.glob("*.pid"))) == 2, 30), "no workers"
        pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
        assert all(alive(pid) for pid in pids)
        job.send_signal(sig)
        job.wait(10)
        t0 = time.monotonic()
        gone = wait_for(lambda: not any(alive(pid) for pid in pids), 2.0)
        assert gone, f"workers still alive {time.monotonic() - t0:.1f} s after the parent died"
        assert wait_for(lambda: not started_from(tmp_path), 2.0), started_from(tmp_path)
    finally:
        job.kill()
        job.wait()


STUCK_THREADS = textwrap.dedent(
    """
    import os, sys, time
    import flowkit as fk

    class Stuck(fk.BatchNode):
        executor = "thread"

        def prep(self, shared):
            return range(3)

        def exec(self, item):
            os.write(1, b"started\\n")
            time.sleep(60)

    flow = Stuck()
    """
)


@pytest.mark.parametrize("uvloop", ["1", "0"])  # uvloop when installed, and asyncio's loop
def test_ctrl_c_ends_a_run_of_stuck_threads_within_1_s_and_says_so(
    tmp_path: Path, uvloop: str
) -> None:
    (tmp_path / "stuck.py").write_text(STUCK_THREADS)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWKIT_UVLOOP": uvloop}
    job = subprocess.Popen(
        [sys.executable, "-m", "flowkit.cli", "run", "stuck:flow", "--no-store", "--no-progress"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert job.stdout is not None and job.stderr is not None
        for _ in range(3):
            line = job.stdout.readline().strip()
            assert line == "started", job.stderr.read()
        t0 = time.monotonic()
        job.send_signal(signal.SIGINT)
        job.wait(10)
        took = time.monotonic() - t0
        err = job.stderr.read() if job.stderr else ""
    finally:
        job.kill()
        job.wait()
    assert took < 1.0, f"exited {took:.2f} s after Ctrl-C"
    assert job.returncode == 130
    assert "3 thread(s) still inside a blocking exec call were abandoned" in err
    assert "Traceback" not in err


PARTLY_DONE = textwrap.dedent(
    """
    import asyncio, os
    import flowkit as fk

    class Half(fk.AsyncParallelBatchNode):
        max_concurrency = 4

        async def prep_async(self, shared):
            return range(8)

        async def exec_async(self, item):
            if item >= 4:
                os.write(1, b"stuck\\n")
                await asyncio.sleep(60)
            return item

    flow = Half()
    """
)


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CLI = [sys.executable, "-m", "flowkit.cli"]


def start_half(tmp_path: Path, stderr: int) -> subprocess.Popen[str]:
    """``flowkit run half:flow --run-id r1`` in ``tmp_path``, its stdout piped."""
    (tmp_path / "half.py").write_text(PARTLY_DONE)
    return subprocess.Popen(
        [*CLI, "run", "half:flow", "--no-progress", "--run-id", "r1"],
        env=ENV,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_is_listed_as_such_and_says_how_to_resume(
    tmp_path: Path, sig: signal.Signals
) -> None:
    job = start_half(tmp_path, subprocess.PIPE)
    try:
        assert job.stdout is not None
        for _ in range(4):
            assert job.stdout.readline().strip() == "stuck"
        job.send_signal(sig)
        job.wait(10)
        err = job.stderr.read() if job.stderr else ""
    finally:
        job.kill()
        job.wait()
    assert job.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("flowkit: interrupted Half after ")
    assert last.endswith("resume with: flowkit run half:flow --no-progress --resume r1")
    assert "Traceback" not in err and "failed" not in err
    runs = subprocess.run([*CLI, "runs"], env=ENV, cwd=tmp_path, capture_output=True, text=True)
    [row] = [line for line in runs.stdout.splitlines() if "r1" in line]
    assert "interrupted" in row and "4" in row  # four finished items stored, none failed


def test_a_run_whose_process_was_killed_is_listed_as_interrupted(tmp_path: Path) -> None:
    job = start_half(tmp_path, subprocess.DEVNULL)
    assert job.stdout is not None
    for _ in range(4):
        job.stdout.readline()
    job.kill()
    job.wait()

    def listed() -> str:
        out = subprocess.run([*CLI, "runs"], env=ENV, cwd=tmp_path, capture_output=True, text=True)
        return next(line for line in out.stdout.splitlines() if "r1" in line)

    assert wait_for(lambda: "interrupted" in listed(), 5), listed()  # once its writer is done
