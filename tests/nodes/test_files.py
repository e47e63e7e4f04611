"""Safe names under a root, and atomic writes that leave old or new content, never half."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.files import (
    UnsafePathError,
    safe_filename,
    safe_path,
    write_bytes_atomic,
    write_text_atomic,
)

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=300)  # surrogates included


@settings(max_examples=300, deadline=None)
@given(name=ANY_TEXT)
def test_any_text_gives_one_safe_component(name: str) -> None:
    result = safe_filename(name)
    assert result and len(result.encode()) <= 200
    assert result == safe_filename(result)
    assert unicodedata.is_normalized("NFC", result)
    assert not result.startswith((".", " ")) and not result.endswith((".", " "))
    assert not any(c in result for c in '/\\\0<>:"|?*')
    assert all(unicodedata.category(c) not in ("Cc", "Cs") for c in result)


@settings(max_examples=150, deadline=None)
@given(directory=ANY_TEXT, name=ANY_TEXT)
def test_any_text_path_stays_inside_root_and_can_be_written(
    tmp_path_factory: pytest.TempPathFactory, directory: str, name: str
) -> None:
    root = tmp_path_factory.mktemp("root")
    path = safe_path(root, directory, name)
    assert path.resolve().is_relative_to(root.resolve())
    assert path.parent.parent == root.resolve()
    asyncio.run(write_text_atomic(path, name.encode(errors="replace").decode()))
    assert path.is_file()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..", "untitled"),
        ("/etc/passwd", "_etc_passwd"),
        ("C:\\Windows\\win.ini", "C__Windows_win.ini"),
        ("a\0b", "a_b"),
        ("line\nbreak\ttab", "line break tab"),
        ("bell\x07\x7f", "bell__"),
        ("evil\u202etxt.exe", "evil_txt.exe"),
        ('what? "quoted" <x>|*', "what_ _quoted_ _x___"),
        ("  .hidden  ", "hidden"),
        ("trailing dots...", "trailing dots"),
        ("", "untitled"),
        ("   ", "untitled"),
        ("Français — 日本語 🎉", "Français — 日本語 🎉"),
        ("e\u0301cole", "\u00e9cole"),
    ],
)
def test_explicit_names(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("Nul.tar.gz", "_Nul.tar.gz"),
        ("aux .json", "_aux .json"),
        ("COM1", "_COM1"),
        ("lpt9.log", "_lpt9.log"),
        ("COM\u00b9", "_COM\u00b9"),
        ("CONSOLE", "CONSOLE"),
        ("COM10", "COM10"),
        ("my con.txt", "my con.txt"),
    ],
)
def test_windows_device_names(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


def test_long_names_are_cut_at_a_character_boundary_keeping_the_extension() -> None:
    result = safe_filename("é" * 300 + ".json")
    assert result.endswith(".json")
    assert len(result.encode()) <= 200
    assert set(result.removesuffix(".json")) == {"é"}
    long_extension = safe_filename("report." + "x" * 300, max_bytes=64)
    assert long_extension == "report." + "x" * 56


def test_default_is_used_and_checked() -> None:
    assert safe_filename("...", default="unnamed.txt") == "unnamed.txt"
    with pytest.raises(ValueError, match="default"):
        safe_filename("", default="..")
    with pytest.raises(ValueError, match="max_bytes"):
        safe_filename("x", max_bytes=8)


def test_safe_path_sanitises_each_part(tmp_path: Path) -> None:
    assert safe_path(tmp_path, "..", "../x") == tmp_path.resolve() / "untitled" / "_x"
    assert safe_path(tmp_path, "/abs/olute") == tmp_path.resolve() / "_abs_olute"


def test_safe_path_refuses_a_symlink_out_of_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside"):
        safe_path(root, "escape", "file.txt")


async def test_write_creates_parents_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    assert await write_text_atomic(target, "first\n") == target
    await write_text_atomic(target, "second\n")
    assert target.read_bytes() == b"second\n"
    await write_bytes_atomic(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    assert os.listdir(target.parent) == ["out.txt"]


async def test_replacing_keeps_permission_bits(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    target.chmod(0o640)
    await write_text_atomic(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


async def test_failed_write_keeps_old_content_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        await write_text_atomic(target, "new" * 10_000)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


async def test_unencodable_text_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        await write_text_atomic(target, "half \ud800 written")
    with pytest.raises(UnicodeEncodeError):
        await write_text_atomic(target, "日本語", encoding="ascii")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


async def test_non_bytes_data_fails_mid_write_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    not_bytes: object = ["not", "bytes"]
    with pytest.raises(TypeError):
        await write_bytes_atomic(target, not_bytes)  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


async def test_concurrent_writers_leave_one_whole_version(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    versions = [str(i) * 100_000 for i in range(8)]
    await asyncio.gather(*(write_text_atomic(target, v) for v in versions))
    assert target.read_text() in versions
    assert os.listdir(tmp_path) == ["out.txt"]
