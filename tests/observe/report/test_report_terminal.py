"""``flowkit report`` in a real terminal: tables when they fit, and in 80 columns every line
fits and no word is cut, shortened or broken across lines."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.report import load_report
from flowkit.report.tables import node_blocks

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


class Fetch(fk.AsyncParallelBatchNode):
    max_concurrency = 16
    uses = ("api",)

    async def prep_async(self, shared):
        return range(60)

    async def exec_async(self, item):
        await asyncio.sleep(0.001)
        fk.record_usage(calls=1, prompt_tokens=1_200, completion_tokens=300, llm_retries=1)
        return item


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("terminal")
    flow = fk.AsyncFlow(start=Fetch(name="FetchEveryDocumentFromTheArchive"), name="archive")
    limits = {"api": fk.Limit(max_concurrency=3, rpm=60_000)}
    fk.Runner(limits=limits, report=out, progress=False).run(flow, {})
    return out


def in_terminal(cwd: Path, columns: int, *args: str) -> str:
    """What ``flowkit ARGS`` shows in a terminal ``columns`` wide (escape codes removed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowkit.cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env={**env, "TERM": "xterm"},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


def test_in_80_columns_every_line_fits_and_no_word_is_cut(report_dir: Path) -> None:
    shown = in_terminal(report_dir, 80, "report", str(report_dir))
    lines = shown.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert "\u2026" not in shown  # nothing shortened with an ellipsis
    flowing = " ".join(shown.split())  # the text with its line breaks undone
    report = load_report(report_dir)
    expected = [*node_blocks(report), *(f for n in report.nodes for f in n.findings)]
    for text in expected:
        assert " ".join(text.split()) in flowing, text
    assert "FetchEveryDocumentFromTheArchive" in shown.split()  # whole, on one line


def test_a_wide_terminal_gets_the_tables(report_dir: Path) -> None:
    shown = in_terminal(report_dir, 200, "report", str(report_dir))
    assert "\u2503 node" in shown and "named limiters" in shown
    assert all(len(line) <= 200 for line in shown.splitlines())
    data = json.loads((report_dir / "report.json").read_text())
    assert data["nodes"][0]["name"] in shown
