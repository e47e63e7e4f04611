"""Safe file names and atomic writes for files whose names and contents come from data.

Names derived from model output or documents (a language, a title) may contain separators,
``..``, control characters or Windows device names; ``safe_filename`` and ``safe_path`` turn
them into one harmless path component under a known root. ``write_text_atomic`` and
``write_bytes_atomic`` replace a file in one step, so a crash never leaves half a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import stat
import unicodedata
from pathlib import Path

import aiofiles
import aiofiles.os

StrPath = str | os.PathLike[str]

_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"}
)
_FORBIDDEN = frozenset('/\\<>:"|?*')
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_MAX_EXTENSION_BYTES = 16


class UnsafePathError(ValueError):
    """A path would resolve outside the directory it has to stay in."""


def safe_filename(name: str, *, default: str = "untitled", max_bytes: int = 200) -> str:
    """Turn arbitrary text into one safe, portable file name; deterministic.

    Separators, NUL, control and bidi-override characters and characters Windows forbids
    become ``_``; other whitespace becomes a space; leading/trailing dots and spaces go (so
    no hidden files, ``.`` or ``..``); Windows device names (``CON``, ``com1.txt``) get a
    ``_`` prefix; the UTF-8 length is capped at ``max_bytes``, keeping a short extension.
    Other Unicode is kept, NFC-normalised. If nothing is left, ``default`` is used.
    """
    if max_bytes < 2 * _MAX_EXTENSION_BYTES:
        raise ValueError(f"max_bytes must be at least {2 * _MAX_EXTENSION_BYTES}")
    for candidate in (name, default):
        if cleaned := _clean(candidate, max_bytes):
            return cleaned
    raise ValueError(f"default {default!r} is not a usable file name")


def _clean(name: str, max_bytes: int) -> str:
    text = "".join(_safe_char(c) for c in unicodedata.normalize("NFC", name)).strip(" .")
    text = _truncate(text, max_bytes - 1)  # room for the device-name prefix
    if text.partition(".")[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        text = "_" + text
    return unicodedata.normalize("NFC", text)


def _safe_char(char: str) -> str:
    if char in _FORBIDDEN or char in _BIDI_CONTROLS:
        return "_"
    if char.isspace():
        return " "
    if unicodedata.category(char) in ("Cc", "Cs"):  # controls, lone surrogates
        return "_"
    return char


def _truncate(text: str, max_bytes: int) -> str:
    if len(text.encode()) <= max_bytes:
        return text
    stem, dot, extension = text.rpartition(".")
    suffix = dot + extension
    if not stem or len(suffix.encode()) > _MAX_EXTENSION_BYTES:
        stem, suffix = text, ""
    budget = max_bytes - len(suffix.encode())
    cut = stem.encode()[:budget].decode(errors="ignore")
    return cut.rstrip(" .") + suffix


def safe_path(root: StrPath, *parts: str) -> Path:
    """``root`` joined with each part made a ``safe_filename``; never resolves outside root.

    Each part is one component (a ``/`` inside a part does not make a sub-directory).
    Raises UnsafePathError when the result would leave root, e.g. through a symlink.
    """
    base = Path(root).resolve()
    candidate = base.joinpath(*(safe_filename(part) for part in parts))
    resolved = candidate.resolve()
    if not resolved.is_relative_to(base):
        raise UnsafePathError(f"{candidate} resolves to {resolved}, outside {base}")
    return candidate


async def write_text_atomic(path: StrPath, text: str, encoding: str = "utf-8") -> Path:
    """Atomically replace ``path`` with ``text``, written as is (no newline translation)."""
    return await write_bytes_atomic(path, text.encode(encoding))


async def write_bytes_atomic(path: StrPath, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data``; readers see the old file or the new one.

    Writes a temporary file in the same directory, fsyncs it and renames it over ``path``
    (creating parent directories); on any failure the temporary file is removed and an
    existing ``path`` is untouched. An existing file's permission bits are kept.
    """
    target = Path(path)
    await aiofiles.os.makedirs(target.parent, exist_ok=True)
    temp = target.with_name(f".{secrets.token_hex(8)}.tmp")
    created = False
    try:
        async with aiofiles.open(temp, "xb") as handle:
            created = True
            await handle.write(data)
            await handle.flush()
            await asyncio.to_thread(os.fsync, handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temp, stat.S_IMODE((await aiofiles.os.stat(target)).st_mode))
        await aiofiles.os.replace(temp, target)
    except BaseException:
        if created:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        raise
    await asyncio.to_thread(_fsync_directory, target.parent)
    return target


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; skipped where directories cannot be fsynced."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
