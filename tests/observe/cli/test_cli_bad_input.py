"""Bad input ends in one line saying what to fix, with an exit status that tells the truth.

Every case runs the real ``flowkit`` command in a subprocess and checks its exit status and
that stderr is one ``flowkit: error:`` line (no traceback); where work could have started,
it also checks that none did.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

NOT_UTF8 = b"# Notes \xff\xfe here\n"

FLOWS = textwrap.dedent(
    """
    import os
    import flowkit as fk


    class Count(fk.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return range(3)

        async def exec_async(self, item):
            with open("ran.txt", "a") as f:  # proof that work started
                f.write(f"{item}\\n")
            return item


    class Zero(Count):
        max_concurrency = 0


    class Gpu(Count):
        executor = "gpu"


    class Again(fk.AsyncNode):
        async def exec_async(self, _):
            return 1

        async def post_async(self, shared, prep_res, exec_res):
            return "again"


    class Many(fk.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return range(5000)

        async def exec_async(self, item):
            return {"item": item, "text": "x" * 100}


    class Broken(Count):
        async def prep_async(self, shared):
            raise RuntimeError("no items today")


    count = fk.AsyncFlow(start=Count(), name="count")
    broken = fk.AsyncFlow(start=Broken(), name="broken")
    zero = fk.AsyncFlow(start=Zero(), name="zero")
    gpu = fk.AsyncFlow(start=Gpu(), name="gpu")
    many = fk.AsyncFlow(start=Many(), name="many")


    def selfish():
        flow = fk.AsyncFlow(name="selfish")
        flow.start(flow)
        return flow


    def loop():
        again = Again()
        again - "again" >> again
        return fk.AsyncFlow(start=again, name="loop")


    def loop_with_exit():
        again, done = Again(), Count()
        again - "again" >> again
        again - "done" >> done
        return fk.AsyncFlow(start=again, name="agent")
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "myflows.py").write_text(FLOWS)
    (tmp_path / "latin1.md").write_bytes(NOT_UTF8)
    return tmp_path


def flowkit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowkit.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(done: subprocess.CompletedProcess[str], code: int, says: str) -> str:
    """Assert ``done`` exited ``code`` with one ``flowkit: error:`` line containing ``says``."""
    lines = [line for line in done.stderr.splitlines() if "simulated provider" not in line]
    assert done.returncode == code, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("flowkit: error: "), done.stderr[-2000:]
    assert says in lines[0], lines[0]
    return lines[0]


QUIET = ("--no-progress", "--no-store")


# -- input files that are not UTF-8 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("run", "translation", "--input", "latin1.md", "--languages", "French"), "--input"),
        (("run", "batt", "--task-file", "latin1.md"), "--task-file"),
        (("run", "medmcqa", "--input", "latin1.md"), "--input"),
        (("run", "prompt-opt", "--dummies", "latin1.md"), "--dummies"),
        (("run", "prompt-opt", "--seed-prompt", "latin1.md"), "--seed-prompt"),
        (("run", "myflows:count", "--shared", "@latin1.md"), "--shared"),
    ],
    ids=["translation", "batt", "medmcqa", "prompt-opt-dummies", "prompt-opt-seed", "shared"],
)
def test_a_file_that_is_not_utf8_is_one_line_naming_the_option_and_the_byte(
    project: Path, args: tuple[str, ...], option: str
) -> None:
    done = flowkit(project, *args, *QUIET)
    line = one_line_error(done, 2, f"{option}: latin1.md is not UTF-8 text (byte 0xff at offset 8)")
    assert "save it as UTF-8" in line
    assert not (project / "flowkit-out").exists()  # nothing was started, nothing left


def test_a_report_json_that_is_not_utf8_is_one_line(project: Path) -> None:
    (project / "rep").mkdir()
    (project / "rep" / "report.json").write_bytes(NOT_UTF8)
    one_line_error(flowkit(project, "report", "rep"), 2, "rep/report.json is not UTF-8 text")


# -- medmcqa's questions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("", "holds no questions (it is empty)"),
        ('{"question": "no options"}\n[1, 2\n', "has no usable question: 2 record(s) skipped"),
        (
            json.dumps({"id": 1, "question": "?", "opa": "", "opb": "", "opc": "", "opd": ""})[:-1]
            + ', "cop": 1}\n',
            "hold no words to build the offline embedder from",
        ),
    ],
    ids=["empty", "no-usable-question", "no-words"],
)
def test_medmcqa_without_a_usable_question_is_one_line(
    project: Path, content: str, says: str
) -> None:
    (project / "q.jsonl").write_text(content)
    one_line_error(flowkit(project, "run", "medmcqa", "--input", "q.jsonl", *QUIET), 2, says)


# -- settings and wiring ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("run", "myflows:zero"), "Zero: max_concurrency must be a positive integer, got 0"),
        (("run", "myflows:gpu"), "Gpu: unknown executor 'gpu'"),
        (("run", "myflows:selfish"), "flow selfish is wired into itself (selfish -> selfish)"),
        (("run", "myflows:count", "--epsilons", "1"), "unrecognized arguments: --epsilons 1"),
        (("run", "medmcqa", "--epsilons", "1e308"), "ε values must be at most 1e+06"),
        (("run", "prompt-opt", "--sim-latency", "-1"), "expected a number of at least 0"),
        (("run", "myflows:count", "--max-steps", "0"), "expected a positive integer"),
    ],
    ids=["max-concurrency-0", "executor-gpu", "self-wired", "unknown-option", "epsilon-1e308",
         "sim-latency-negative", "max-steps-0"],
)  # fmt: skip
def test_bad_settings_are_usage_errors_before_any_work(
    project: Path, args: tuple[str, ...], says: str
) -> None:
    one_line_error(flowkit(project, *args, *QUIET), 2, says)
    assert not (project / "ran.txt").exists()
    assert not (project / "flowkit-out").exists()


def test_resume_with_another_run_id_is_a_usage_error(project: Path) -> None:
    assert flowkit(project, "run", "myflows:count", "--run-id", "r1").returncode == 0
    done = flowkit(project, "run", "myflows:count", "--resume", "r1", "--run-id", "r2")
    one_line_error(done, 2, "--resume RUN_ID continues that run under its own id")


def test_a_flow_file_path_runs_and_draws(project: Path) -> None:
    (project / "sub").mkdir()
    (project / "sub" / "job.py").write_text(
        "import flowkit as fk\nfrom helper import Count\nflow = fk.AsyncFlow(start=Count())\n"
    )
    (project / "sub" / "helper.py").write_text(FLOWS)  # a sibling import works
    done = flowkit(project, "run", "./sub/job.py:flow", *QUIET)
    assert done.returncode == 0, done.stderr
    assert ": 3 items, 0 failed" in done.stdout
    assert flowkit(project, "graph", "sub/job.py:flow").stdout.startswith("flowchart TD")
    one_line_error(flowkit(project, "run", "./sub/nope.py:flow"), 2, "no such file sub/nope.py")


# -- write targets are checked before the work starts -----------------------------------------


TRANSLATE = ("run", "translation", "--input", "ok.md", "--languages", "French")
NOT_A_FOLDER = "--output: afile exists and is not a folder"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("run", "myflows:count", "--report", "afile/rep"), "--report: cannot create folder"),
        (
            ("run", "myflows:count", "--report", "linked"),
            "--report: linked/report.json is a symbolic link",
        ),
        (("run", "batt", "--tasks", "007bbfb7", "--output", "afile/p.jsonl"), NOT_A_FOLDER),
        (("run", "medmcqa", "--output", "afile"), NOT_A_FOLDER),
        (("run", "prompt-opt", "--output", "afile/o"), "--output: cannot create folder afile/o"),
        ((*TRANSLATE, "--output", "afile"), NOT_A_FOLDER),
    ],
    ids=["report-under-a-file", "report-json-symlink", "batt-output", "medmcqa-output",
         "prompt-opt-output", "translation-output"],
)  # fmt: skip
def test_an_unwritable_target_is_refused_before_the_work(
    project: Path, args: tuple[str, ...], says: str
) -> None:
    (project / "afile").write_text("a file, not a folder")
    (project / "ok.md").write_text("# Hi\n")
    (project / "linked").mkdir()
    outside = project / "outside.json"
    outside.write_text("keep me")
    (project / "linked" / "report.json").symlink_to(outside)
    one_line_error(flowkit(project, *args, "--no-progress"), 2, says)
    assert not (project / "ran.txt").exists()
    assert outside.read_text() == "keep me"
    assert not (project / ".flowkit").exists()  # no store was opened


def test_a_store_that_is_a_folder_is_refused_before_the_work(project: Path) -> None:
    (project / "stores").mkdir()
    done = flowkit(project, "run", "myflows:count", "--store", "stores", "--no-progress")
    one_line_error(done, 2, "--store: stores is a folder; give a file, e.g. stores/runs.db")
    assert not (project / "ran.txt").exists()


def test_flowkit_report_never_writes_through_a_symbolic_link(project: Path) -> None:
    assert flowkit(project, "run", "myflows:count", "--report", "rep", *QUIET).returncode == 0
    outside = project / "outside.html"
    outside.write_text("keep me")
    (project / "rep" / "report.html").unlink()
    (project / "rep" / "report.html").symlink_to(outside)
    one_line_error(flowkit(project, "report", "rep"), 2, "rep/report.html is a symbolic link")
    assert outside.read_text() == "keep me"


# -- reading a run back ----------------------------------------------------------------------


def test_flowkit_report_of_a_file_is_one_line(project: Path) -> None:
    done = flowkit(project, "report", "myflows.py")
    one_line_error(done, 2, "myflows.py is a file; give the folder holding report.json")


def test_export_of_an_unknown_node_says_so(project: Path) -> None:
    assert flowkit(project, "run", "myflows:count", "--run-id", "r1").returncode == 0
    done = flowkit(project, "export", "r1", "--node", "Nope")
    one_line_error(
        done, 2, "--node: run r1 has no node 'Nope' with stored results; its nodes: Count"
    )
    assert done.stdout == ""
    assert len(flowkit(project, "export", "r1", "--node", "Count").stdout.splitlines()) == 3


def test_export_into_a_closed_pipe_stops_quietly(project: Path) -> None:
    assert flowkit(project, "run", "myflows:many", "--run-id", "big").returncode == 0
    export = subprocess.Popen(
        [sys.executable, "-m", "flowkit.cli", "export", "big"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert export.stdout is not None and export.stderr is not None
    first = export.stdout.readline()  # like `| head -1`: one line, then the reader goes away
    export.stdout.close()
    code = export.wait(timeout=60)
    assert json.loads(first)["node"] == "many/Many"
    assert export.stderr.read() == b""
    assert code == 141  # as a tool that SIGPIPE ended


# -- loops ------------------------------------------------------------------------------------


def test_graph_warns_about_a_loop_with_no_way_out_and_not_about_one_with_an_exit(
    project: Path,
) -> None:
    done = flowkit(project, "graph", "myflows:loop")
    assert done.returncode == 0 and done.stdout.startswith("flowchart TD")
    assert done.stderr.startswith("flowkit: warning: loop/Again: the loop Again -> Again has no")
    assert "--max-steps N" in done.stderr and len(done.stderr.splitlines()) == 1
    assert flowkit(project, "graph", "myflows:loop_with_exit").stderr == ""


def test_max_steps_stops_a_runaway_loop(project: Path) -> None:
    done = flowkit(project, "run", "myflows:loop", "--max-steps", "25", *QUIET)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "FlowStructureError: loop: more than 25 steps (the last action was 'again')" in (
        done.stderr
    )
    assert "resume with" not in done.stderr  # --no-store: nothing to resume


def test_no_resume_is_suggested_when_nothing_reached_the_store(project: Path) -> None:
    done = flowkit(project, "run", "myflows:broken", "--no-progress")
    assert done.returncode == 1
    assert "flowkit: broken failed after" in done.stderr and "no items today" in done.stderr
    assert "--resume" not in done.stderr
