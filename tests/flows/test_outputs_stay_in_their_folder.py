"""No bundled flow writes through a symbolic link planted in its output folder: each such
target is refused in one line (``OutputError``) and nothing outside the folder changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowkit.cli import main
from flows.medmcqa.cli import MedMCQACommand
from flows.prompt_opt.cli import PromptOptCommand
from flows.translation.cli import TranslationCommand

OUTSIDE = "nobody may write here\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the output folder that a planted link points at."""
    target = tmp_path / "elsewhere" / "precious.txt"
    target.parent.mkdir()
    target.write_text(OUTSIDE)
    return target


def refused(status: int, err: str, link: Path) -> None:
    assert status == 1, err
    assert "OutputError" in err or "flowkit: error:" in err
    assert f"{link} is a symbolic link; flowkit does not write through links" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def medmcqa(out: Path) -> int:
    return main(
        [
            *("run", "medmcqa", "--no-progress", "--no-store", "--output", str(out)),
            *("--limit", "2", "--scenarios", "1,3.2", "--epsilons", "1"),
        ],
        commands=[MedMCQACommand()],
    )


@pytest.mark.parametrize("name", ["results.jsonl", "accuracy.csv", "accuracy.md", "accuracy.png"])
def test_medmcqa_refuses_a_link_among_its_outputs(
    name: str, tmp_path: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(outside)
    status = medmcqa(out)
    refused(status, capsys.readouterr().err, out / name)
    assert outside.read_text() == OUTSIDE


def prompt_opt(out: Path) -> int:
    return main(
        [
            *("run", "prompt-opt", "--no-progress", "--no-store", "--output", str(out)),
            *("--provider", "simulated", "--sim-latency", "0", "--budget", "120", "--turns", "1"),
        ],
        commands=[PromptOptCommand()],
    )


@pytest.mark.parametrize("name", ["best_prompt.txt", "candidates.jsonl", "transcripts"])
def test_prompt_opt_refuses_a_link_among_its_outputs(
    name: str, tmp_path: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(outside.parent if name == "transcripts" else outside)
    status = prompt_opt(out)
    refused(status, capsys.readouterr().err, out / name)
    assert [p.name for p in outside.parent.iterdir()] == ["precious.txt"]
    assert outside.read_text() == OUTSIDE


def test_prompt_opt_ignores_a_link_at_its_old_temporary_name(
    tmp_path: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Temporary files get unique names: a link planted at a predictable one is not used."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".best_prompt.txt.tmp").symlink_to(outside)
    assert prompt_opt(out) == 0, capsys.readouterr().err
    assert outside.read_text() == OUTSIDE
    assert (out / "best_prompt.txt").read_text().strip()
    assert (out / ".best_prompt.txt.tmp").is_symlink()  # left alone


def test_translation_refuses_a_link_where_a_translation_goes(
    tmp_path: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "guide.md"
    source.write_text("# Guide\n\nHello.\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "guide.French.md").symlink_to(outside)
    status = main(
        [
            *("run", "translation", "--no-progress", "--no-store", "--provider", "simulated"),
            *("--input", str(source), "--languages", "French,German", "--output", str(out)),
        ],
        commands=[TranslationCommand()],
    )
    refused(status, capsys.readouterr().err, out / "guide.French.md")
    assert outside.read_text() == OUTSIDE
    assert not (out / "guide.German.md").exists()  # refused before any work
