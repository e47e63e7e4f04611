"""One live process per run id: a lock per run, held by the run's process and its writer.

Each run id locks one byte of a lock file beside the store (``runs.db-lock``), at an offset
hashed from the id, so the file stays empty however many runs there are. On Linux the lock is
an open-file-description lock: the writer process inherits the descriptor, so the lock stays
held while the writer commits what a dead run handed it, and the kernel releases it when the
last of the two exits, however it ends (``kill -9`` included). Elsewhere a classic POSIX
record lock is used, held by the run's process only.

Who holds a run is recorded in the store's ``meta`` table, so a refused process can name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import struct
import sys
import time
from pathlib import Path

from flowkit.errors import StoreError

_OFD = sys.platform == "linux" and hasattr(fcntl, "F_OFD_SETLK") and struct.calcsize("P") == 8
_FLOCK = "@hhqqi4x"  # struct flock on 64-bit Linux: type, whence, start, len, pid

# Lock descriptors open in this process: a child forked from it (a process worker) must not
# keep one, or a run it outlives would stay locked.
_OPEN: set[int] = set()


def _close_in_child() -> None:
    for fd in _OPEN:
        with contextlib.suppress(OSError):
            os.close(fd)
    _OPEN.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class RunLockedError(StoreError):
    """Another live process is running the same run id."""


def lock_path(store: Path) -> Path:
    """The lock file of the store at ``store``."""
    return store.with_name(store.name + "-lock")


def holder_key(run_id: str) -> str:
    """The ``meta`` key that records who holds ``run_id``."""
    return f"holder:{run_id}"


def describe_self() -> str:
    """This process, as a holder record: pid and command line (JSON)."""
    return json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv)[:300]})


class RunLock:
    """The lock of one run id in the store at ``store``; ``fd`` travels to the writer."""

    def __init__(self, store: Path, run_id: str) -> None:
        self.run_id = run_id
        digest = hashlib.blake2b(run_id.encode(), digest_size=8).digest()
        self._offset = int.from_bytes(digest, "big") >> 2  # a positive off_t
        path = lock_path(store)
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise StoreError(
                f"cannot create the lock file {path} ({exc.strerror or exc}); the store's "
                "folder must be writable: pass --store PATH (store=) somewhere writable, or "
                "--no-store"
            ) from None
        _OPEN.add(self.fd)

    def try_acquire(self) -> bool:
        """Take the lock if no live process holds it; False if one does."""
        try:
            if _OFD:
                lock = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, self._offset, 1, 0)
                fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, lock)
            else:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self._offset)
        except OSError:
            return False
        return True

    def acquire(self, holder: str | None, wait_s: float) -> None:
        """Take the lock, or raise ``RunLockedError`` naming the live holder.

        ``holder`` is what the store recorded about the process that held the run last. A
        holder that is still alive is named at once; once it is gone, its writer may still be
        committing what it was handed, so the lock is waited for up to ``wait_s`` seconds.
        """
        deadline = time.monotonic() + wait_s
        while not self.try_acquire():
            pid, command = _holder(holder)
            if pid == os.getpid():
                raise RunLockedError(
                    f"run {self.run_id!r} is already running in this process; one run per "
                    "run id at a time"
                )
            if pid is not None and _alive(pid):
                raise RunLockedError(
                    f"run {self.run_id!r} is in use by process {pid}"
                    + (f" ({command})" if command else "")
                    + "; one process per run: wait for it to end or stop it, then resume"
                )
            if time.monotonic() > deadline:
                raise RunLockedError(
                    f"run {self.run_id!r} is still locked {wait_s:g} s after its process "
                    f"{pid or '(unknown)'} ended (its writer is still committing); try again "
                    "shortly"
                )
            time.sleep(0.02)

    def close(self) -> None:
        """Release the lock (the writer keeps it until it exits)."""
        if self.fd >= 0:
            _OPEN.discard(self.fd)
            os.close(self.fd)
            self.fd = -1


def held(store: Path, run_id: str) -> bool:
    """Whether a live process (a run or its writer) holds ``run_id``'s lock; True when that
    cannot be told (no lock file can be opened there)."""
    if not lock_path(store).exists():
        return False
    try:
        lock = RunLock(store, run_id)
    except StoreError:
        return True
    try:
        return not lock.try_acquire()
    finally:
        lock.close()


def _holder(record: str | None) -> tuple[int | None, str]:
    try:
        data = json.loads(record or "")
        return int(data["pid"]), str(data.get("command", ""))
    except (ValueError, KeyError, TypeError):
        return None, ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie is gone
            return False
    return True
