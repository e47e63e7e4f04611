"""Large results beside the store: one file each, written once, referenced by its row.

SQLite writes a value twice in WAL mode (the log, then the database at a checkpoint) and
syncs at each checkpoint; a large value is cheaper as a file of its own. A result whose text
is ``LARGE`` bytes or more is written by the run's process to ``<store>-blobs/<run>/`` under
a fresh name, and only then is its row (name and size, no value) handed to the writer
process. So a row never points at a half-written file; a file whose row never arrived (the
process was killed in between) belongs to no row and is removed when the run is resumed.

A text result is stored as its UTF-8 text (``.txt``), anything else as JSON (``.json``).
Reading checks the size the row recorded: a missing or short file (the machine lost power
before the file reached the disk) reads as not stored, so its item runs again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path

from flowkit.errors import StoreError

LARGE = 1 << 18
"""Results whose text has at least this many bytes are stored as files."""
_SLICE = 1 << 23
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def folder_of(store: Path) -> Path:
    """The folder of a store's large results."""
    return store.with_name(store.name + "-blobs")


class Blobs:
    """The large results of run ``run_id`` in the store at ``store``."""

    def __init__(self, store: Path, run_id: str) -> None:
        name = run_id if _SAFE.fullmatch(run_id) else "run-" + _digest(run_id)
        self.folder = folder_of(store) / name
        self._dir: int | None = None

    def write(self, data: str | bytes) -> tuple[str, int]:
        """Write ``data`` to a new file, a text result as its UTF-8 text, bytes as they are
        (its JSON); the file's name and size.

        Text is encoded 8 M characters at a time, so a long one is never copied whole."""
        raw = isinstance(data, str)
        name = secrets.token_hex(10) + (".txt" if raw else ".json")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        size = 0
        try:
            fd = os.open(name, flags, 0o644, dir_fd=self._folder())
            try:
                for start in range(0, len(data), _SLICE):
                    part = data[start : start + _SLICE]
                    if isinstance(part, str):
                        part = part.encode("utf-8", "surrogatepass")
                    view = memoryview(part)
                    size += len(view)
                    while view:
                        view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(
                f"cannot write a large result to {self.folder / name} ({exc.strerror or exc}); "
                "free some space or make the store's folder writable, then resume the run"
            ) from None
        return name, size

    def read(self, name: str, size: int) -> tuple[str, bool] | None:
        """``(text, raw)`` of the file ``name``, or None when it is missing or not ``size``
        bytes long."""
        if os.sep in name or name.startswith("."):
            return None
        try:
            with open(self.folder / name, "rb") as handle:
                data = handle.read(size + 1)
        except OSError:
            return None
        if len(data) != size:
            return None
        return data.decode("utf-8", "surrogatepass"), name.endswith(".txt")

    def sweep(self, keep: set[str]) -> int:
        """Remove the files no row refers to (``keep`` are those that rows name); how many."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return 0
        removed = 0
        for name in names:
            if name not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(self.folder / name)
                    removed += 1
        return removed

    def close(self) -> None:
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None

    def check(self) -> None:
        """Refuse now, before any work, a folder that writing would refuse: a symbolic link."""
        for folder in (self.folder.parent, self.folder):
            if folder.is_symlink():
                raise StoreError(
                    f"{folder} is a symbolic link; flowkit does not write large results "
                    "through links. Remove it, or use another store"
                )

    def _folder(self) -> int:
        """The run's folder, opened once (created if missing; a symbolic link is refused)."""
        if self._dir is None:
            self.check()
            for folder in (self.folder.parent, self.folder):
                with contextlib.suppress(FileExistsError):
                    folder.mkdir(exist_ok=True)
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            self._dir = os.open(self.folder, flags)
        return self._dir


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
