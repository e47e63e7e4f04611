"""Resume that knows what it resumes: one live process per run id, and the flow's
fingerprint (nodes, their code and params, the settings it was built from)."""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flowkit.cli import main
from flowkit.commands import FlowCommand
from flowkit.errors import FlowkitWarning
from flowkit.fingerprint import class_digest
from flowkit.store import ResumeMismatchError

JOB = textwrap.dedent(
    """
    import os, time
    import flowkit as fk

    class Work(fk.BatchNode):
        executor = "thread"  # the loop stays free to hand results to the writer
        max_concurrency = 1

        def prep(self, shared):
            return list(range(20))

        def exec(self, item):
            with open("calls.txt", "a") as f:
                f.write(f"{item}\\n")
            if item == 10:
                open("started-10", "w").close()
                while not os.path.exists("release"):
                    time.sleep(0.01)
            return item * item

    work = Work()
    """
)


def flowkit(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flowkit.cli", "run", "job:work", "--no-progress", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_second_process_on_a_live_run_is_refused_naming_the_holder(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(JOB)
    first = flowkit(tmp_path, "--run-id", "r1")
    wait_for(tmp_path / "started-10", first)
    second = flowkit(tmp_path, "--resume", "r1")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1
    assert f"run 'r1' is in use by process {first.pid}" in err
    assert "Traceback" not in err and "--resume r1" not in err, err
    (tmp_path / "release").touch()
    assert first.wait(timeout=60) == 0
    calls = (tmp_path / "calls.txt").read_text().split()
    assert sorted(map(int, calls)) == list(range(20))  # the refused process ran nothing


def test_a_killed_holders_run_is_taken_over_and_each_item_stored_once(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(JOB)
    first = flowkit(tmp_path, "--run-id", "r1")
    wait_for(tmp_path / "started-10", first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    (tmp_path / "release").touch()
    again = flowkit(tmp_path, "--resume", "r1")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "10 reused from the store" in out
    with sqlite3.connect(tmp_path / ".flowkit" / "runs.db") as conn:
        indexes = [r[0] for r in conn.execute("SELECT item_index FROM results ORDER BY 1")]
    assert indexes == list(range(20))
    calls = [int(c) for c in (tmp_path / "calls.txt").read_text().split()]
    assert sorted(calls) == sorted([*range(20), 10])  # item 10 was in flight when killed


CALLS: list[tuple[str, int]] = []
"""(class, item) of every exec call of the nodes below (flows run copies of nodes)."""


@pytest.fixture(autouse=True)
def _no_calls_yet() -> None:
    CALLS.clear()


class Double(fk.BatchNode):
    def prep(self, shared):
        return shared["items"]

    def exec(self, item):
        CALLS.append((type(self).__name__, item))
        return item * 2

    def post(self, shared, prep_res, exec_res):
        shared["doubled"] = exec_res


class Total(fk.Node):
    def prep(self, shared):
        return shared["doubled"]

    def exec(self, values):
        return sum(values)

    def post(self, shared, prep_res, exec_res):
        shared["total"] = exec_res


def pipeline(double: fk.BaseNode, total: fk.BaseNode | None = None) -> fk.Flow:
    double >> (total or Total())
    return fk.Flow(start=double, name="job")


def calls_of(node: fk.BaseNode) -> list[int]:
    return [item for cls, item in CALLS if cls == type(node).__name__]


def test_resume_of_another_flow_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r").run(fk.Flow(start=Double(), name="job"), {"items": [1, 2]})
    with pytest.raises(ResumeMismatchError, match=r"another flow: node 'job/Total' .* is new"):
        fk.Runner(store=db, resume="r").run(pipeline(Double()), {"items": [1, 2]})


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r", config={"--seed": 0}).run(pipeline(Double()), {"items": [1]})
    with pytest.raises(ResumeMismatchError, match="other settings: --seed 0 then, 1 now"):
        fk.Runner(store=db, resume="r", config={"--seed": 1}).run(
            pipeline(Double()), {"items": [1]}
        )


class EditedDouble(fk.BatchNode):
    """Double as edited after the run: another exec."""

    name = "Double"

    def prep(self, shared):
        return shared["items"]

    def exec(self, item):
        CALLS.append((type(self).__name__, item))
        return item * 3

    def post(self, shared, prep_res, exec_res):
        shared["doubled"] = exec_res


def test_a_changed_node_runs_its_items_again_and_the_others_are_reused(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    fk.Runner(store=db, run_id="r").run(pipeline(Double()), {"items": [1, 2, 3]})
    edited, total = EditedDouble(), Total()
    shared: dict[str, Any] = {"items": [1, 2, 3]}
    runner = fk.Runner(store=db, resume="r")
    with pytest.warns(FlowkitWarning, match=r"node 'job/Double' changed .*\(class and code\)"):
        runner.run(pipeline(edited, total), shared)
    assert shared["total"] == 18  # the new code's results, not the stored ones
    assert calls_of(edited) == [1, 2, 3]
    # the changed node's results replaced the old ones; the next resume reuses them
    CALLS.clear()
    again = EditedDouble()
    runner = fk.Runner(store=db, resume="r")
    runner.run(pipeline(again), {"items": [1, 2, 3]})
    assert calls_of(again) == [] and runner.last_run is not None
    assert runner.last_run.resumed == 4  # three items and the total


def test_changed_params_run_again(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    first = Double()
    first.set_params({"scale": 1})
    fk.Runner(store=db, run_id="r").run(pipeline(first), {"items": [1, 2]})
    second = Double()
    second.set_params({"scale": 2})
    CALLS.clear()
    with pytest.warns(FlowkitWarning, match=r"'job/Double' changed .*\(params\)"):
        fk.Runner(store=db, resume="r").run(pipeline(second), {"items": [1, 2]})
    assert calls_of(second) == [1, 2]


def digest_of(folder: Path, source: str) -> str:
    """The code digest of class ``Node`` in a module ``fp_nodes`` with ``source``."""
    folder.mkdir()
    path = folder / "fp_nodes.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location("fp_nodes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fp_nodes"] = module  # where inspect finds a class's source
    try:
        spec.loader.exec_module(module)
        return class_digest(module.Node)
    finally:
        del sys.modules["fp_nodes"]


def test_comments_docstrings_and_blank_lines_are_not_code_changes(tmp_path: Path) -> None:
    plain = digest_of(
        tmp_path / "plain",
        """
        import flowkit as fk
        class Node(fk.Node):
            def exec(self, x):
                return x + 1
        """,
    )
    documented = digest_of(
        tmp_path / "documented",
        '''
        import flowkit as fk

        class Node(fk.Node):
            """Adds one."""

            def exec(self, x):  # the item plus one
                """One more than x."""

                return x + 1
        ''',
    )
    changed = digest_of(
        tmp_path / "changed",
        """
        import flowkit as fk
        class Node(fk.Node):
            def exec(self, x):
                return x + 2
        """,
    )
    assert documented == plain
    assert changed != plain


class Seeded(FlowCommand):
    name = "seeded"
    description = "a flow built from a --seed"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seed", type=int, default=0)

    def build(self, args: argparse.Namespace) -> tuple[fk.BaseNode, Any]:
        return pipeline(Double()), {"items": [args.seed, args.seed + 1]}


def test_the_command_line_refuses_a_resume_with_other_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["run", "seeded", "--no-progress", "--run-id", "r1", "--seed", "1"]
    assert main(argv, commands=[Seeded()]) == 0
    capsys.readouterr()
    argv = ["run", "seeded", "--no-progress", "--resume", "r1", "--seed", "2"]
    assert main(argv, commands=[Seeded()]) == 1
    err = capsys.readouterr().err
    assert "cannot resume run 'r1': it was started with other settings: --seed 1 then, 2 now" in err
    assert len(err.strip().splitlines()) == 1, err
    argv = ["run", "seeded", "--no-progress", "--resume", "r1", "--seed", "1"]
    assert main(argv, commands=[Seeded()]) == 0
