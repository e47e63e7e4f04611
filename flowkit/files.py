"""Writing output files safely: never through a symlink, never half-written, never a secret.

Every file flowkit or a bundled flow writes (reports, exports, results, transcripts) goes
through here. A target that is a symbolic link, or a folder that is one, is refused with an
``OutputError`` naming it, so a link planted in an output folder cannot send a write
elsewhere. Whole files are written to a unique temporary name beside the target and renamed
over it; appends open the file with ``O_NOFOLLOW``. Text passes ``flowkit.redact`` first.
``check_target`` lets a command refuse an unwritable target before any work starts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO

from flowkit.errors import OutputError
from flowkit.redact import redact

StrPath = str | os.PathLike[str]


def ensure_dir(path: StrPath) -> Path:
    """Create folder ``path`` (and its parents) if missing; refuse a symlink, a file or a
    folder this process cannot write to."""
    folder = Path(path)
    if folder.is_symlink():
        raise OutputError(f"{folder} is a symbolic link; flowkit does not write through links")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{folder} exists and is not a folder") from None
    except OSError as exc:
        raise OutputError(f"cannot create folder {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"folder {folder} is not writable")
    return folder


def check_target(path: StrPath) -> Path:
    """Refuse now what writing ``path`` later would refuse: a link, a folder, no permission."""
    target = Path(path)
    ensure_dir(target.parent)
    if target.is_symlink():
        raise OutputError(f"{target} is a symbolic link; flowkit does not write through links")
    if target.exists() and not target.is_file():
        raise OutputError(f"{target} exists and is not a regular file")
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"{target} is not writable")
    return target


def write_bytes(path: StrPath, data: bytes) -> Path:
    """Replace ``path`` with ``data`` in one step (a unique temporary file, then a rename)."""
    target = check_target(path)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return target


def write_text(path: StrPath, text: str, *, redacted: bool = True) -> Path:
    """Replace ``path`` with ``text`` (UTF-8), secrets redacted unless ``redacted`` is False."""
    return write_bytes(path, (redact(text) if redacted else text).encode())


def open_append(path: StrPath) -> IO[str]:
    """Open ``path`` for appending text (created if missing), refusing a symbolic link.

    What is written through the returned file is not redacted: pass it through
    ``flowkit.redact.redact`` first.
    """
    target = check_target(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot open {target} for writing: {exc.strerror or exc}") from None
    return os.fdopen(fd, "a", encoding="utf-8")
