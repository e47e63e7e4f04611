"""Large results are files beside the store, written once: whole before their rows, read back
by resume and export, swept when no row names them, and old stores gain the columns."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flowkit.errors import StoreError
from flowkit.store import Store
from flowkit.store.blobs import LARGE, Blobs, folder_of

CALLS: list[int] = []


class Mixed(fk.BatchNode):
    """Item 0: long text (non-ASCII, with a lone surrogate); 1: a large dict; 2: large bytes;
    3: a small value."""

    name = "Mixed"

    def prep(self, shared):
        return [0, 1, 2, 3]

    def exec(self, item: int) -> Any:
        CALLS.append(item)
        if item == 0:
            return "é\ud800" + "x" * LARGE
        if item == 1:
            return {"rows": list(range(LARGE // 4))}
        if item == 2:
            return bytes(range(256)) * (LARGE // 256)
        return item

    def post(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


def expected() -> list[Any]:
    return [
        "é\ud800" + "x" * LARGE,
        {"rows": list(range(LARGE // 4))},
        (bytes(range(256)) * (LARGE // 256)).hex(),  # an unannotated result keeps bytes as hex
        3,
    ]


def rows(db: Path) -> list[tuple[int, int, str | None, int | None]]:
    """(item_index, length of the value column, blob, blob_bytes) of each row."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT item_index, length(value), blob, blob_bytes FROM results "
            "ORDER BY item_index, rowid"
        ).fetchall()


def test_large_results_are_files_whole_on_disk_and_come_back_on_resume_and_export(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    CALLS.clear()
    fk.Runner(store=db, run_id="r").run(Mixed(), {})
    stored = rows(db)
    assert [r[2] is not None for r in stored] == [True, True, True, False]
    folder = Blobs(db, "r").folder
    assert folder == tmp_path / "runs.db-blobs" / "r"
    text, listing, data = (folder / str(r[2]) for r in stored[:3])
    assert text.suffix == ".txt" and listing.suffix == ".json" and data.suffix == ".json"
    assert text.read_bytes() == expected()[0].encode("utf-8", "surrogatepass")  # the text itself
    assert json.loads(listing.read_bytes()) == expected()[1]
    assert json.loads(data.read_bytes()) == expected()[2]
    assert all(length == 0 for _, length, blob, _ in stored[:3])  # no value in the rows
    assert [r[3] for r in stored[:3]] == [os.path.getsize(p) for p in (text, listing, data)]
    assert sorted(os.listdir(folder)) == sorted(p.name for p in (text, listing, data))

    CALLS.clear()
    shared: dict = {}
    runner = fk.Runner(store=db, resume="r")
    runner.run(Mixed(), shared)
    assert CALLS == [] and runner.last_run is not None and runner.last_run.resumed == 4
    assert shared["out"] == expected()

    store = Store(db, readonly=True)
    try:
        assert [r.value for r in store.results("r")] == expected()
    finally:
        store.close()


def test_the_command_line_exports_large_results(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(
        "import flowkit as fk\n\n"
        "class Long(fk.BatchNode):\n"
        "    def prep(self, shared):\n        return [1, 2]\n\n"
        f"    def exec(self, item):\n        return str(item) * {LARGE}\n\n"
        "long = Long()\n"
    )
    run = [sys.executable, "-m", "flowkit.cli"]
    done = subprocess.run(
        [*run, "run", "job:long", "--run-id", "r", "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert len(os.listdir(tmp_path / ".flowkit" / "runs.db-blobs" / "r")) == 2
    out = subprocess.run([*run, "export", "r"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    values = [json.loads(line)["value"] for line in out.stdout.splitlines()]
    assert values == ["1" * LARGE, "2" * LARGE]


def test_a_missing_or_short_file_runs_its_item_again_and_export_names_it(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r").run(Mixed(), {})
    folder = Blobs(db, "r").folder
    stored = rows(db)
    (folder / str(stored[0][2])).unlink()  # lost
    with open(folder / str(stored[1][2]), "r+b") as handle:  # cut short, as by a power loss
        handle.truncate(100)

    store = Store(db, readonly=True)
    try:
        with pytest.raises(StoreError, match=r"Mixed item 0 .* is missing or incomplete; resume"):
            list(store.results("r"))
    finally:
        store.close()

    CALLS.clear()
    shared: dict = {}
    fk.Runner(store=db, resume="r").run(Mixed(), shared)
    assert CALLS == [0, 1] and shared["out"] == expected()
    latest = {str(blob) for blob in {r[0]: r[2] for r in rows(db)}.values() if blob}
    assert len(latest) == 3  # the new rows of items 0 and 1, and item 2's
    assert latest < set(os.listdir(folder))
    fk.Runner(store=db, resume="r").run(Mixed(), {})
    assert set(os.listdir(folder)) == latest  # the damaged file went with its superseded row


def test_files_no_row_names_are_removed_on_resume(tmp_path: Path) -> None:
    """A process killed after writing a file but before its row reached the writer leaves a
    file no row names (whole or half-written): resuming the run removes it."""
    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r").run(Mixed(), {})
    blobs = Blobs(db, "r")
    orphan, _ = blobs.write("y" * LARGE)
    half, _ = blobs.write(b'"abc')
    blobs.close()
    kept = {str(r[2]) for r in rows(db) if r[2]}
    assert set(os.listdir(blobs.folder)) == kept | {orphan, half}
    other = Blobs(db, "other-run")  # another run's files are not this run's business
    foreign, _ = other.write("z" * LARGE)
    other.close()

    fk.Runner(store=db, resume="r").run(Mixed(), {})
    assert set(os.listdir(blobs.folder)) == kept
    assert os.listdir(other.folder) == [foreign]


def test_a_changed_node_loses_its_files_with_its_rows(tmp_path: Path) -> None:
    class Edited(Mixed):
        name = "Mixed"

        def exec(self, item: int) -> Any:
            return super().exec(item) if item else "w" * LARGE

    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r").run(Mixed(), {})
    before = set(os.listdir(Blobs(db, "r").folder))
    shared: dict = {}
    with pytest.warns(fk.FlowkitWarning, match="node 'Mixed' changed"):
        fk.Runner(store=db, resume="r").run(Edited(), shared)
    after = set(os.listdir(Blobs(db, "r").folder))
    assert shared["out"][0] == "w" * LARGE
    assert len(after) == 3 and not before & after  # the old files went with the old rows


def test_a_run_id_that_is_not_a_plain_name_stays_inside_the_store_folder(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="../../escape").run(Mixed(), {})
    (made,) = os.listdir(folder_of(db))
    assert made.startswith("run-") and "/" not in made
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "runs.db",
        "runs.db-blobs",
        "runs.db-lock",
    ]


def test_a_linked_blob_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    db, elsewhere = tmp_path / "runs.db", tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder_of(db).symlink_to(elsewhere)
    CALLS.clear()
    with pytest.raises(StoreError, match=r"runs.db-blobs is a symbolic link"):
        fk.Runner(store=db, run_id="r").run(Mixed(), {})
    assert CALLS == []  # refused before any work
    assert list(elsewhere.iterdir()) == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, flow TEXT NOT NULL, started REAL NOT NULL,
    finished REAL, status TEXT NOT NULL);
CREATE TABLE results (run_id TEXT NOT NULL, node TEXT NOT NULL, item_key TEXT NOT NULL,
    item_index INTEGER NOT NULL, ok INTEGER NOT NULL, value TEXT NOT NULL,
    written REAL NOT NULL);
CREATE INDEX results_by_run ON results (run_id);
CREATE TABLE fingerprints (run_id TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('application', 'flowkit'), ('schema_version', '1');
INSERT INTO runs VALUES ('old', 'Mixed', 0, 1, 'done');
INSERT INTO results VALUES ('old', 'Mixed', '0', 0, 1, '"kept"', 0);
"""


def test_a_store_of_schema_1_is_read_as_it_is_and_upgraded_when_written(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(SCHEMA_1)
    before = db.read_bytes()
    store = Store(db, readonly=True)
    try:
        assert [r.value for r in store.results("old")] == ["kept"]
    finally:
        store.close()
    assert db.read_bytes() == before  # reading changed nothing

    CALLS.clear()
    shared: dict = {}
    fk.Runner(store=db, resume="old").run(Mixed(), shared)
    assert CALLS == [1, 2, 3] and shared["out"][0] == "kept"
    with sqlite3.connect(db) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == ("2",)
    assert [r[2] is not None for r in rows(db)] == [False, True, True, False]
