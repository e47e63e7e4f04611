"""The flowkit command: exit codes, help, run options, named flows, and no leaked secrets."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flowkit.cli import main
from flowkit.commands import FlowCommand
from flowkit.results import RunInfo

FLOWS = """
import asyncio
import os
import flowkit as fk

class Double(fk.AsyncParallelBatchNode):
    uses = ("api",)

    async def prep_async(self, shared):
        return shared.get("numbers", [1, 2, 3])

    async def exec_async(self, item):
        await asyncio.sleep(0.001)
        return item * 2

    async def post_async(self, shared, prep_res, exec_res):
        shared["doubled"] = exec_res

class Plain(fk.AsyncNode):
    async def exec_async(self, _):
        return 1

class Boom(fk.AsyncNode):
    async def exec_async(self, _):
        raise RuntimeError("exploded")

class Leaky(fk.AsyncParallelBatchNode):
    on_error = "collect"

    async def prep_async(self, shared):
        return range(3)

    async def exec_async(self, item):
        key = os.environ["OPENAI_API_KEY"]
        raise ValueError(f"upstream rejected key={key} (Authorization: Bearer {key})")

class Fatal(fk.AsyncNode):
    async def exec_async(self, _):
        raise PermissionError("401 for " + os.environ["OPENAI_API_KEY"])

ok = fk.AsyncFlow(start=Plain(), name="ok")
failing = fk.AsyncFlow(start=Boom(), name="failing")
limited = fk.AsyncFlow(start=Double(), name="limited")

def make_leaky():
    leaky = Leaky()
    leaky >> Fatal()
    return fk.AsyncFlow(start=leaky, name="leaky")

not_a_flow = 42
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "myflows.py").write_text(FLOWS)
    return tmp_path


def flowkit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a real subprocess (stdout and stderr are not terminals)."""
    return subprocess.run(
        [sys.executable, "-m", "flowkit.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- exit codes and help ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["run"], ["graph"], ["report"], ["list"]])
def test_every_command_has_help(project: Path, args: list[str]) -> None:
    done = flowkit(project, *args, "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: flowkit")


def test_a_successful_run_exits_0_with_a_one_line_result(project: Path) -> None:
    done = flowkit(project, "run", "myflows:ok", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok ok in ") and ": 1 item, 0 failed" in done.stdout


def test_a_failed_run_exits_1_and_says_why(project: Path) -> None:
    done = flowkit(project, "run", "myflows:failing", "--no-progress")
    assert done.returncode == 1
    assert "RuntimeError: exploded" in done.stderr
    assert "flowkit: failing failed after" in done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "nosuchflow"], "unknown flow 'nosuchflow'"),
        (["run", "nosuchmodule:flow"], "cannot import module 'nosuchmodule'"),
        (["run", "myflows:missing"], "has no attribute 'missing'"),
        (["run", "myflows:not_a_flow"], "is a int, not a flow or node"),
        (["run", "myflows:ok", "--limit", "Plain=zero"], "expected NODE=N or N"),
        (["run", "myflows:ok", "--limit", "Nope=2"], "no node or limiter named 'Nope'"),
        (["run", "myflows:ok", "--executor", "Plain=gpu"], "expected NODE=KIND"),
        (["run", "myflows:ok", "--executor", "Nope=thread"], "no node named 'Nope'"),
        (["run", "myflows:ok", "--shared", "@missing.json"], "cannot read missing.json"),
        (["run", "myflows:ok", "--shared", "[1, 2]"], "expected a JSON object"),
        (["run", "myflows:limited"], "give each a concurrency with --limit api=N"),
        (["report", "nowhere"], "no report.json in nowhere"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2(project: Path, args: list[str], says: str) -> None:
    done = flowkit(project, *args)
    assert done.returncode == 2
    assert says in done.stderr


def test_the_console_script_is_installed(project: Path) -> None:
    script = Path(sys.executable).with_name("flowkit")
    if not script.exists():
        pytest.skip("the flowkit console script is not installed in this environment")
    done = subprocess.run(
        [str(script), "run", "myflows:ok", "--no-progress"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


# -- run options --------------------------------------------------------------------------------


def test_shared_limits_and_report_reach_the_run(project: Path) -> None:
    (project / "shared.json").write_text(json.dumps({"numbers": list(range(10))}))
    done = flowkit(
        project,
        *("run", "myflows:limited", "--shared", "@shared.json", "--limit", "api=2"),
        *("--limit", "Double=3", "--executor", "Double=async", "--report", "out"),
    )
    assert done.returncode == 0, done.stderr
    assert "10 items" in done.stdout and "report: out/report.html" in done.stdout
    report = json.loads((project / "out" / "report.json").read_text())
    [double] = report["nodes"]
    assert double["items"] == 10 and double["limit"] == 3 and double["peak_in_flight"] <= 2

    rendered = flowkit(project, "report", "out")
    assert rendered.returncode == 0, rendered.stderr
    assert "Double" in rendered.stdout and "limited: ok" in rendered.stdout


def test_executor_option_moves_a_node_to_threads(project: Path) -> None:
    (project / "threaded.py").write_text(
        textwrap.dedent(
            """
            import threading
            import flowkit as fk

            class WhereAmI(fk.BatchNode):
                def prep(self, shared):
                    return [1, 2]

                def exec(self, item):
                    return threading.current_thread().name

                def post(self, shared, prep_res, exec_res):
                    print("threads:", sorted(set(exec_res)))

            flow = fk.Flow(start=WhereAmI(), name="where")
            """
        )
    )
    done = flowkit(
        project, "run", "threaded:flow", "--no-progress", "--executor", "WhereAmI=thread"
    )
    assert done.returncode == 0, done.stderr
    assert "MainThread" not in done.stdout and "threads: [" in done.stdout


def test_graph_prints_mermaid(project: Path) -> None:
    done = flowkit(project, "graph", "myflows:make_leaky")
    assert done.returncode == 0
    assert done.stdout.startswith("flowchart TD")
    assert "Leaky" in done.stdout and "Fatal" in done.stdout


# -- named flows (FlowCommand) ------------------------------------------------------------------


class Numbers(fk.AsyncParallelBatchNode):
    uses = ("llm",)

    async def prep_async(self, shared):
        return shared["numbers"]

    async def exec_async(self, item):
        await asyncio.sleep(0)
        return item * item

    async def post_async(self, shared, prep_res, exec_res):
        shared["squares"] = exec_res


class Squares(FlowCommand):
    name = "squares"
    description = "Square the first N numbers."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--upto", type=int, default=10, help="numbers to draw from")

    def build(self, args: argparse.Namespace) -> tuple[fk.BaseNode, Any]:
        numbers = list(range(args.upto))[: args.limit_items]
        return fk.AsyncFlow(start=Numbers(), name="squares"), {"numbers": numbers}

    def limits(self, args: argparse.Namespace) -> dict[str, fk.Limit]:
        return {"llm": fk.Limit(max_concurrency=4, rpm=60_000)}

    def finish(self, args: argparse.Namespace, shared: Any, run_info: RunInfo) -> int:
        print("squares:", shared["squares"])
        return 0 if run_info.nodes["Numbers"].failed == 0 else 1


def test_a_named_flow_gets_its_options_and_a_bare_limit(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "squares", "--upto", "8", "--limit", "3", "--no-progress"], [Squares()])
    out = capsys.readouterr().out
    assert code == 0
    assert "squares: [0, 1, 4]" in out  # --limit 3: the first three numbers


def test_a_named_flows_limiter_can_be_capped(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "squares", "--limit", "llm=1", "--no-progress"], [Squares()])
    assert code == 0
    assert "squares: [0, 1, 4, 9" in capsys.readouterr().out


def test_finish_decides_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    class Strict(Squares):
        def finish(self, args: argparse.Namespace, shared: Any, run_info: RunInfo) -> int:
            return 1

    assert main(["run", "squares", "--no-progress"], [Strict()]) == 1


def test_named_flow_help_shows_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "squares", "--help"], [Squares()]) == 0
    out = capsys.readouterr().out
    assert "--upto" in out and "--limit NODE=N|N" in out


def test_list_shows_each_named_flow_with_its_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["list"], [Squares()]) == 0
    assert capsys.readouterr().out.split() == ["squares", *Squares.description.split()]


def test_graph_of_a_named_flow(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "squares"], [Squares()]) == 0
    assert "Numbers" in capsys.readouterr().out


def test_graph_of_a_flow_that_needs_options(capsys: pytest.CaptureFixture[str]) -> None:
    class NeedsInput(Squares):
        def add_arguments(self, parser: argparse.ArgumentParser) -> None:
            parser.add_argument("--input", required=True)

    assert main(["graph", "squares"], [NeedsInput()]) == 2
    assert "should override FlowCommand.graph()" in capsys.readouterr().err

    class Drawable(NeedsInput):
        def graph(self) -> fk.BaseNode:
            return fk.AsyncFlow(start=Numbers(), name="squares")

    assert main(["graph", "squares"], [Drawable()]) == 0
    assert "Numbers" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["translation", "batt"])
def test_bundled_flows_draw_without_options(tmp_path: Path, name: str) -> None:
    done = flowkit(tmp_path, "graph", name)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("flowchart TD")
    assert {"translation": "TranslateChunks", "batt": "ScoreSamples"}[name] in done.stdout


# -- secrets ------------------------------------------------------------------------------------

FAKE_KEY = "sk-test-FAKE1234567890abcdefXYZ"


def test_api_keys_never_reach_output_or_report_files(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    env_key = os.environ["OPENAI_API_KEY"]
    done = flowkit(project, "run", "myflows:make_leaky", "--report", "out")
    assert done.returncode == 1
    assert "ValueError" in done.stderr and "PermissionError" in done.stderr
    rendered = flowkit(project, "report", "out")
    assert rendered.returncode == 0
    written = [p for p in (project / "out").iterdir() if p.is_file()]
    assert {p.name for p in written} >= {"report.json", "report.html"}
    report = json.loads((project / "out" / "report.json").read_text())
    assert report["errors"] and "Traceback" in report["errors"][0]["traceback"]
    for text in (done.stdout, done.stderr, rendered.stdout, rendered.stderr):
        assert env_key not in text and "FAKE1234567890" not in text
    for path in written:
        data = path.read_bytes()
        assert env_key.encode() not in data and b"FAKE1234567890" not in data, path.name
    assert "[REDACTED]" in (project / "out" / "report.html").read_text()
