"""``flowkit run`` with a budget (exit status 3, resumable), timeouts and the cache."""

from __future__ import annotations

import sqlite3
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit.cli import BUDGET, main

FLOW = textwrap.dedent(
    """
    import asyncio
    import flowkit as fk

    class Double(fk.AsyncParallelBatchNode):
        uses = ("api",)
        cache = True

        async def prep_async(self, shared):
            return list(range(shared.get("n", 10)))

        async def exec_async(self, item):
            if item == shared_hang.get("item"):
                await asyncio.Event().wait()
            return item * 2

        async def post_async(self, shared, prep_res, exec_res):
            print("doubled", sum(r for r in exec_res if isinstance(r, int)))

    shared_hang = {}
    flow = Double(on_error="collect")
    """
)


@pytest.fixture
def flow_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "doubling.py"
    path.write_text(FLOW)
    yield path
    sys.modules.pop("doubling", None)  # each test imports its own file


def flowkit(*args: str) -> int:
    return main(["run", "doubling.py:flow", "--no-progress", "--limit", "api=2", *args])


def test_a_spent_budget_exits_3_naming_it_and_a_larger_one_resumes(
    flow_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert flowkit("--max-calls", "4", "--run-id", "b1") == BUDGET == 3
    out = capsys.readouterr().out
    assert out.startswith("budget spent: Double in ")
    assert "budget run: 4 of 4 calls: spent (max_calls 4 reached)" in out
    assert "resume with a larger budget: --resume b1" in out
    with sqlite3.connect(".flowkit/runs.db") as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("budget",)]
    assert flowkit("--max-calls", "20", "--resume", "b1") == 0
    out = capsys.readouterr().out
    assert "doubled 90" in out and "(4 reused from the store)" in out
    assert "budget run: 10 of 20 calls" in out


def test_bad_budget_and_timeout_options_exit_2(
    flow_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert flowkit("--max-cost", "0") == 2
    assert "--max-cost: expected a positive number" in capsys.readouterr().err
    assert flowkit("--max-calls", "1.5") == 2
    assert flowkit("--timeout", "Double") == 2
    assert "expected NODE=SECONDS" in capsys.readouterr().err
    assert flowkit("--timeout", "Nope=3") == 2
    assert "--timeout: no node named 'Nope' in Double; its nodes: Double" in (
        capsys.readouterr().err
    )
    (flow_file.parent / "folder.db").mkdir()
    assert flowkit("--cache", "folder.db") == 2
    assert "--cache: folder.db is a folder" in capsys.readouterr().err


def test_a_timeout_from_the_shell_fails_only_the_hung_item(
    flow_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow_file.write_text(FLOW.replace("shared_hang = {}", "shared_hang = {'item': 3}"))
    assert flowkit("--timeout", "Double=0.2", "--no-store") == 1  # a failed item: status 1
    captured = capsys.readouterr()
    assert "1 failed" in captured.out and "1 try timed out" in captured.out


def test_the_cache_option_reuses_results_across_runs(
    flow_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert flowkit("--cache", "--no-store") == 0
    assert "from the cache" not in capsys.readouterr().out
    assert flowkit("--cache", "--no-store") == 0
    assert "(10 from the cache)" in capsys.readouterr().out
    assert Path(".flowkit/cache.db").is_file()  # the default place
    assert main(["cache", "ls"]) == 0
    assert "10 entries for 1 node(s)" in capsys.readouterr().out
