"""Progress: live bars on a terminal, plain log lines elsewhere, nothing when turned off."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

import flowkit as fk
from flowkit.progress import Progress


class Work(fk.AsyncParallelBatchNode):
    max_concurrency = 8

    async def prep_async(self, shared):
        return range(shared.get("n", 40))

    async def exec_async(self, item):
        await asyncio.sleep(0.005)
        if item == 3:
            raise ValueError(f"item three failed with {os.environ.get('FAKE_API_KEY')}")
        return item


class PerDoc(fk.AsyncParallelBatchFlow):
    async def prep_async(self, shared):
        return [{"doc": d} for d in range(3)]


def nested_flow() -> fk.AsyncFlow:
    inner = PerDoc(start=Work(name="Summarise", on_error="collect"), name="per-doc")
    return fk.AsyncFlow(start=inner, name="outer")


def terminal() -> Console:
    return Console(record=True, force_terminal=True, file=io.StringIO(), width=120)


async def test_live_bars_show_nested_nodes_indented_with_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_API_KEY", "fake-secret-value-123")
    console = terminal()
    progress = Progress(console, delay=0, refresh=0.01)
    await fk.Runner(on_event=progress, progress=False).run_async(nested_flow(), {"n": 40})
    text = console.export_text()
    lines = text.splitlines()
    assert any(line.startswith("outer ") for line in lines)
    assert any(line.startswith("  per-doc ") for line in lines)
    final = [line for line in lines if line.startswith("    Summarise ")][-1]
    assert "120 done" in final and "3 failed" in final  # three sub-flows of 40 items each
    assert "Summarise: item 3 failed: ValueError" in text
    assert "fake-secret-value-123" not in text and "[REDACTED]" in text


async def test_plain_lines_come_every_interval_and_when_a_node_ends() -> None:
    class Slow(fk.AsyncParallelBatchNode):
        max_concurrency = 2

        async def prep_async(self, shared):
            return range(8)

        async def exec_async(self, item):
            await asyncio.sleep(0.05)

    out = io.StringIO()
    progress = Progress(Console(file=out), plain=True, interval=0.04)
    await fk.Runner(on_event=progress, progress=False).run_async(
        fk.AsyncFlow(start=Slow(), name="job"), {}
    )
    lines = out.getvalue().splitlines()
    periodic = [line for line in lines if "job/Slow:" in line and "in flight" in line]
    assert len(periodic) >= 2
    assert lines[-1].startswith("flowkit [") and "job/Slow done: 8 items in" in lines[-1]


async def test_quick_runs_draw_nothing_before_the_delay() -> None:
    console = terminal()
    runner = fk.Runner(on_event=Progress(console, delay=60), progress=False)
    await runner.run_async(Work(on_error="collect"), {})
    assert "done" not in console.export_text()


async def test_progress_off_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    await fk.Runner(progress=False).run_async(Work(on_error="collect"), {})
    await fk.Runner().run_async(Work(on_error="collect"), {})  # stderr is not a terminal here
    assert capsys.readouterr() == ("", "")


def test_plain_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "many.py").write_text(
        textwrap.dedent(
            """
            import asyncio
            import flowkit as fk

            class Many(fk.AsyncParallelBatchNode):
                max_concurrency = 50

                async def prep_async(self, shared):
                    return range(300)

                async def exec_async(self, item):
                    await asyncio.sleep(0.001)

            flow = fk.AsyncFlow(start=Many(), name="bulk")
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "flowkit.cli", "run", "many:flow"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "flowkit [" in done.stderr and "bulk/Many done: 300 items in" in done.stderr
    assert "\x1b[" not in done.stderr  # no terminal escapes in logs
    quiet = subprocess.run(
        [sys.executable, "-m", "flowkit.cli", "run", "many:flow", "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""
