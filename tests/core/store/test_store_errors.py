"""A store that cannot be used says so in one line: damaged, read-only, locked, disk full;
and a failed run suggests --resume only when something of it reached the store."""

from __future__ import annotations

import functools
import os
import shlex
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

JOB = textwrap.dedent(
    """
    import flowkit as fk

    class Square(fk.BatchNode):
        def prep(self, shared):
            return list(range(shared.get("n", 5)))

        def exec(self, item):
            if item == shared_fail_at:
                raise ValueError(f"no square for {item}")
            return "x" * shared_size if shared_size else item * item

    shared_size = 0
    shared_fail_at = -1
    square = Square()

    def big():
        global shared_size
        shared_size = 300_000
        return Square()

    def fails_first():
        global shared_fail_at
        shared_fail_at = 0
        return Square()

    def fails_later():
        global shared_fail_at
        shared_fail_at = 3
        return Square(max_concurrency=1)
    """
)


def flowkit(cwd: Path, *args: str, env: dict[str, str] | None = None, wrap: str = "") -> str:
    """stderr of ``flowkit ARGS`` run in ``cwd`` (inside ``wrap``, a shell prefix, if given);
    asserts it failed without a traceback, in one line."""
    command = [sys.executable, "-m", "flowkit.cli", *args]
    if wrap:
        command = ["sh", "-c", wrap + " " + shlex.join(command)]
    done = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode in (1, 2), (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def ok(cwd: Path, *args: str, wrap: str = "") -> str:
    command = [sys.executable, "-m", "flowkit.cli", *args]
    if wrap:
        command = ["sh", "-c", wrap + " " + shlex.join(command)]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@functools.cache
def namespaces() -> bool:
    """Whether this machine lets a test mount file systems in a mount namespace of its own."""
    try:
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def read_only(folder: Path, cwd: Path) -> str:
    """A shell prefix that runs a command in ``cwd`` with ``folder`` read-only (as root, in a
    mount namespace of its own: root ignores permission bits)."""
    c = shlex.quote(str(cwd))
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return f"cd {c} &&"
    if not namespaces():
        pytest.skip("needs mount namespaces (unshare -m) to make a folder read-only for root")
    q = shlex.quote(str(folder))
    return (
        f"unshare -m sh -c 'mount --bind {q} {q} && mount -o remount,ro,bind {q} {q} && "
        f'cd {c} && exec "$@"\' sh'
    )


@pytest.fixture
def job(tmp_path: Path) -> Path:
    (tmp_path / "job.py").write_text(JOB)
    return tmp_path


def test_a_store_with_damaged_data_pages_is_one_line_for_runs_export_and_resume(
    job: Path,
) -> None:
    ok(job, "run", "job:square", "--no-progress", "--run-id", "r1", "--shared", '{"n": 3000}')
    db = job / ".flowkit" / "runs.db"
    data = bytearray(db.read_bytes())
    pages = len(data) // 65536
    assert pages > 4
    data[pages // 2 * 65536 :] = b"\x13" * (len(data) - pages // 2 * 65536)  # results' pages
    db.write_bytes(data)
    for args in (
        ["runs"],
        ["export", "r1"],
        ["run", "job:square", "--no-progress", "--resume", "r1", "--shared", '{"n": 3000}'],
    ):
        err = flowkit(job, *args)
        assert "database disk image is malformed" in err and "the file is damaged" in err


def test_the_default_store_in_a_read_only_folder_is_one_line(job: Path) -> None:
    err = flowkit(job, "run", "job:square", "--no-progress", wrap=read_only(job, job))
    assert "cannot create folder .flowkit" in err and "--no-store" in err
    assert len(err.strip().splitlines()) == 1


def test_a_store_in_a_read_only_folder_can_be_listed_and_exported_but_not_resumed(
    job: Path,
) -> None:
    ok(job, "run", "job:square", "--no-progress", "--run-id", "r1")
    wrap = read_only(job / ".flowkit", job)
    store = str(job / ".flowkit" / "runs.db")
    assert "r1" in ok(job, "runs", "--store", store, wrap=wrap)
    assert ok(job, "export", "r1", "--store", store, wrap=wrap).count('"ok": true') == 5
    err = flowkit(job, "run", "job:square", "--no-progress", "--resume", "r1", wrap=wrap)
    assert "read-only" in err and "finished items are stored" not in err


LOCKER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("UPDATE runs SET status = status")
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def test_a_store_locked_by_another_process_is_one_line(job: Path) -> None:
    ok(job, "run", "job:square", "--no-progress", "--run-id", "r1")
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(job / ".flowkit" / "runs.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline() == "locked\n"
        env = {"FLOWKIT_STORE_BUSY_S": "0.5"}
        for args in (
            ["runs"],
            ["export", "r1"],
            ["run", "job:square", "--no-progress", "--resume", "r1"],
        ):
            started = time.monotonic()
            err = flowkit(job, *args, env=env)
            assert "locked by another process for more than 0.5 s" in err
            assert time.monotonic() - started < 30
    finally:
        locker.communicate("")


def test_a_full_disk_says_so(job: Path) -> None:
    if os.geteuid() != 0 or not namespaces():
        pytest.skip("needs root and mount namespaces to mount a small file system")
    q = shlex.quote(str(job))
    wrap = (
        f"unshare -m sh -c 'mount -t tmpfs -o size=2m tmpfs {q}/.flowkit "
        f'|| exit 9; cd {q} && exec "$@"\' sh'
    )
    (job / ".flowkit").mkdir()
    err = flowkit(job, "run", "job:big", "--no-progress", "--shared", '{"n": 20}', wrap=wrap)
    assert "the disk holding .flowkit/runs.db is full" in err
    assert "exit code" not in err and "finished items are stored" not in err


def test_resume_is_suggested_only_when_a_finished_item_was_stored(job: Path) -> None:
    def run(target: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "flowkit.cli", "run", target, "--no-progress"],
            cwd=job,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1
        return done.stderr

    err = run("job:fails_first")  # item 0 fails: nothing finished
    assert "ValueError: no square for 0" in err
    assert "finished items are stored" not in err
    err = run("job:fails_later")  # items 0, 1 and 2 finished first
    assert "finished items are stored; resume with --resume" in err
    with sqlite3.connect(job / ".flowkit" / "runs.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM results WHERE ok").fetchone() == (3,)
