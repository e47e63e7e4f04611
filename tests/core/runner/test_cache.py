"""A cache across runs: a node with a cache policy reuses results that the same code, params
and item made in an earlier run, whatever that run's id, on every executor."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import flowkit as fk
from flowkit.cli import main
from flowkit.store import Store


class Answer(BaseModel):
    item: int
    square: int


class Squares(fk.AsyncParallelBatchNode):
    """Squares the items in shared["items"]; counts its exec calls."""

    cache = True
    calls: list[int] = []

    async def prep_async(self, shared: dict[str, Any]) -> list[int]:
        return shared["items"]

    async def exec_async(self, item: int) -> Answer:
        type(self).calls.append(item)
        if item < 0:
            raise ValueError("negative")
        return Answer(item=item, square=item * item)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, results: list[Any]) -> None:
        shared["results"] = results


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    Squares.calls = []
    SquaresOn.calls = []


def run(node: fk.BaseNode, items: list[int], cache: Path, **options: Any) -> tuple[Any, Any]:
    shared: dict[str, Any] = {"items": items}
    runner = fk.Runner(cache=cache, process_workers=2, **options)
    runner.run(node, shared)
    return shared["results"], runner.last_run


def test_a_later_run_reuses_what_an_earlier_one_computed(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    first, _ = run(Squares(), [1, 2, 3], cache)
    later, info = run(Squares(), [1, 2, 3, 4], cache)
    assert Squares.calls == [1, 2, 3, 4]  # 1, 2 and 3 once only
    assert later[:3] == first and later[3] == Answer(item=4, square=16)  # typed again
    assert (info.cached, info.nodes["Squares"].items, info.run_id != "") == (3, 4, True)


def test_failures_are_not_cached(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    run(Squares(on_error="collect"), [-1, 2], cache)
    results, info = run(Squares(on_error="collect"), [-1, 2], cache)
    assert Squares.calls == [-1, 2, -1]
    assert isinstance(results[0], fk.ErrorRecord) and info.cached == 1


def test_other_params_or_another_node_name_miss(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    run(Squares(), [1], cache)
    node = Squares()
    node.set_params({"scale": 2})
    run(node, [1], cache)
    run(Squares(name="other"), [1], cache)
    assert Squares.calls == [1, 1, 1]


class Keyed(Squares):
    """Results depend on the item's value, not its label; and on a version given in
    cache_key."""

    cache = fk.CachePolicy(key=lambda item: item["value"])
    version = 1

    async def prep_async(self, shared: dict[str, Any]) -> list[dict[str, Any]]:
        return shared["items"]

    async def exec_async(self, item: dict[str, Any]) -> int:  # type: ignore[override]
        type(self).calls.append(item["value"])
        return item["value"] * 2

    def cache_key(self, item: Any) -> Any:
        return {"version": self.version}


def test_the_policys_key_and_the_nodes_cache_key_decide_what_matches(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    run(Keyed(), [{"label": "a", "value": 1}], cache)
    run(Keyed(), [{"label": "b", "value": 1}], cache)  # another label: the same key
    node = Keyed()
    node.version = 2
    run(node, [{"label": "a", "value": 1}], cache)  # what cache_key returns changed
    assert Keyed.calls == [1, 1]


def test_entries_older_than_the_ttl_run_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    node = Squares(cache=fk.CachePolicy(ttl=3600))
    run(node, [1, 2], cache)
    with sqlite3.connect(cache) as db:  # item 1's entry was written two hours ago
        rows = db.execute("SELECT key, value FROM entries").fetchall()
        old = next(key for key, value in rows if '"item":1' in value)
        db.execute("UPDATE entries SET written = written - 7200 WHERE key = ?", (old,))
    run(node, [1, 2], cache)
    assert Squares.calls == [1, 2, 1]


def test_with_a_store_cache_hits_are_stored_with_the_run(tmp_path: Path) -> None:
    cache, store = tmp_path / "cache.db", tmp_path / "runs.db"
    run(Squares(), [1, 2], cache)
    _, info = run(Squares(), [1, 2, 3], cache, store=store, run_id="second")
    assert info.cached == 2
    opened = Store(store, readonly=True)
    try:
        stored = sorted((r.index, r.value["square"]) for r in opened.results("second"))
    finally:
        opened.close()
    assert stored == [(0, 1), (1, 4), (2, 9)]  # the reused ones too: export and resume see all


class SquaresOn(fk.BatchNode):
    cache = True
    calls: list[int] = []

    def prep(self, shared: dict[str, Any]) -> list[int]:
        return shared["items"]

    def exec(self, item: int) -> tuple[int, int]:
        return item * item, os.getpid()

    def post(self, shared: dict[str, Any], prep_res: Any, results: list[Any]) -> None:
        shared["results"] = results


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_threads_and_worker_processes_reuse_cached_results(tmp_path: Path, executor: str) -> None:
    cache = tmp_path / "cache.db"
    first, _ = run(SquaresOn(executor=executor), [1, 2, 3], cache)
    later, info = run(SquaresOn(executor=executor), [1, 2, 3], cache)
    assert later == first  # the pids of the first run: nothing ran again
    assert info.cached == 3


def test_progress_and_report_show_cache_hits(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    run(Squares(), [1, 2], cache)
    run(Squares(), [1, 2, 3], cache, report=tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["nodes"][0]["cached"] == 2
    assert "(2 cached)" in (tmp_path / "report" / "report.html").read_text()


def test_a_node_without_a_policy_is_not_cached(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    run(Squares(cache=False), [1], cache)
    run(Squares(cache=False), [1], cache)
    assert Squares.calls == [1, 1]


def test_the_cache_command_lists_and_clears(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache.db"
    run(Squares(), [1, 2], cache)
    run(Squares(name="other"), [1], cache)
    assert main(["cache", "ls", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "Squares" in out and "other" in out and "3 entries for 2 node(s)" in out
    assert main(["cache", "clear", "--cache", str(cache), "--node", "other"]) == 0
    assert "removed 1 entry" in capsys.readouterr().out
    assert main(["cache", "clear", "--cache", str(cache), "--node", "nope"]) == 2
    assert "no entries of 'nope'" in capsys.readouterr().err
    assert main(["cache", "clear", "--cache", str(cache)]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert main(["cache", "ls", "--cache", str(tmp_path / "none.db")]) == 2
    assert "no cache at" in capsys.readouterr().err


class Opaque(Squares):
    async def prep_async(self, shared: dict[str, Any]) -> list[Any]:
        return [object()]


def test_bad_cache_settings_are_refused_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(fk.ConfigError, match="cache must be True, False or a flowkit.CachePolicy"):
        Squares(cache="yes")  # type: ignore[arg-type]
    with pytest.raises(fk.ConfigError, match="CachePolicy: ttl must be a positive number"):
        fk.CachePolicy(ttl=0)
    (tmp_path / "folder.db").mkdir()
    with pytest.raises(fk.StoreError, match="is a folder"):
        run(Squares(), [1], tmp_path / "folder.db")
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE mine (x)")
    with pytest.raises(fk.StoreError, match="is not a flowkit cache; it was left untouched"):
        run(Squares(), [1], foreign)
    with sqlite3.connect(foreign) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["mine"]
    with pytest.raises(fk.StoreError, match=r"define item_key\(self, item\) -> str on the node"):
        run(Opaque(), [], tmp_path / "cache.db")
    assert Squares.calls == []
