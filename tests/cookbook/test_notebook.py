"""The cookbook's notebook runs in a real Jupyter kernel (one kernel for the whole notebook):
the flow runs inside the kernel's event loop, its progress is redrawn in place while it
runs, and each run's ``RunInfo`` shows its report inline, with peaks within the limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).parents[2]
NOTEBOOK = ROOT / "cookbook" / "11_notebook.ipynb"
LIMITS = {"api": 4, "Score": 8}


class Recording(nbclient.NotebookClient):  # type: ignore[misc,name-defined]
    """Keeps every display message the kernel sends, in order (updates in place too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.displays: list[tuple[int, str, str]] = []

    def process_message(self, msg: dict, cell: Any, cell_index: int) -> Any:
        kind = msg["msg_type"]
        if kind in ("display_data", "update_display_data"):
            self.displays.append((cell_index, kind, msg["content"]["data"].get("text/plain", "")))
        return super().process_message(msg, cell, cell_index)


@pytest.fixture(scope="module")
def executed() -> tuple[Any, Recording]:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        assert cell.get("outputs", []) == [], "commit the notebook without outputs"
    client = Recording(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    return notebook, client


def outputs(notebook: Any) -> list[tuple[int, Any]]:
    return [
        (i, out)
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for out in cell.outputs
    ]


def test_the_notebook_runs_without_errors_or_warnings(executed: tuple[Any, Recording]) -> None:
    notebook, _ = executed
    for _, out in outputs(notebook):
        assert out.output_type != "error", out
        if out.output_type == "stream" and out.name == "stderr":
            assert "arning" not in out.text, out.text
    assert any("score:" in out.get("text", "") for _, out in outputs(notebook))


def test_progress_is_redrawn_in_place_while_the_run_goes_on(
    executed: tuple[Any, Recording],
) -> None:
    _, client = executed
    first = [d for d in client.displays if "Ask:" in d[2]]
    assert first, client.displays
    cell = first[0][0]
    shown = [(kind, text) for i, kind, text in client.displays if i == cell and "Ask:" in text]
    assert shown[0][0] == "display_data" and ": running" in shown[0][1]
    assert any(kind == "update_display_data" for kind, _ in shown)
    assert ": done" in shown[-1][1] and "Ask: 240/240 done" in shown[-1][1]


def test_each_run_shows_its_report_inline_with_peaks_within_limits(
    executed: tuple[Any, Recording],
) -> None:
    notebook, _ = executed
    reports = [
        out.data["text/html"]
        for _, out in outputs(notebook)
        if out.output_type == "execute_result" and "text/html" in out.get("data", {})
    ]
    assert len(reports) == 2  # runner.last_run and handle.info
    for page in reports:
        assert page.startswith('<div class="flowkit-report">')
        assert '<svg id="concurrency"' in page and "<h2>Nodes</h2>" in page
        assert '<section id="limiters">' in page
        # the node with a limit, and the limiter, each within it (Ask has no limit of its own)
        score = re.search(r'Score<div class="paths">.*?<td>[\d.]+ / (\d+) / 8<', page)
        api_row = r"<td>api</td><td>4 in flight</td><td>[\d,]+</td><td>[\d.]+ / (\d+) / 4<"
        held = re.search(api_row, page)
        assert score and held, page[:2000]
        assert int(score.group(1)) <= LIMITS["Score"] and int(held.group(1)) <= LIMITS["api"]
        assert re.search(r'Ask<div class="paths">.*?<td>[\d.]+ / \d+ / &ndash;<', page)
        titles = re.findall(r"(?:limiter )?(\w+) · limit (\d+) · peak (\d+)", page)
        assert {name for name, _, _ in titles} == {"api", "Score"}
        for name, limit, peak in titles:
            assert int(peak) <= int(limit) == LIMITS[name], (name, peak)
