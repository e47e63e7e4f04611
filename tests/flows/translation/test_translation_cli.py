"""``flowkit run translation`` as a real subprocess: exit codes, files, messages.

The command is handed to ``flowkit.cli.main`` directly, so these tests do not depend on the
package's entry points having been reinstalled.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nodes.llm.testing import LLMServer
from nodes.llm.testing.completions import last_user_text, message_text

CLI = (
    "import sys; from flowkit.cli import main; "
    "from flows.translation.cli import TranslationCommand; "
    "sys.exit(main(sys.argv[1:], commands=[TranslationCommand()]))"
)


def flowkit(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the command in ``cwd`` (where its checkpoint store goes), without LLM settings
    from this environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FLOWKIT_"))}
    return subprocess.run(
        [sys.executable, "-c", CLI, "run", "translation", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
        cwd=cwd,
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "notes.md"
    path.write_text("# Notes\n\nKeep `code` as is.\n", encoding="utf-8")
    return path


def test_translates_into_every_language_offline(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = flowkit(
        tmp_path, "--input", str(source), "--languages", "French,German", "--output", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "simulated provider" in done.stderr
    assert f"saved French: {out / 'notes.French.md'}" in done.stdout
    assert (
        out / "notes.German.md"
    ).read_text() == "# [German] Notes\n\n[German] Keep `code` as is.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--languages", " , "], "no languages given"),
        (["--languages", "French", "--input", "missing.md"], "no such file: missing.md"),
        (["--languages", "French", "--provider", "openai"], "needs an API key"),
        (["--languages", "French", "--max-concurrency", "0"], "expected a positive integer"),
    ],
    ids=["no-languages", "missing-input", "no-api-key", "bad-concurrency"],
)
def test_usage_errors_exit_2(source: Path, tmp_path: Path, args: list[str], message: str) -> None:
    done = flowkit(tmp_path, "--input", str(source), "--output", str(tmp_path / "out"), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_failed_language_exits_1_and_the_others_are_saved(source: Path, tmp_path: Path) -> None:
    def responder(body: dict[str, Any]) -> str:
        if "Klingon" in message_text(body["messages"][0]):
            raise RuntimeError("no Klingon today")
        return last_user_text(body["messages"])

    out = tmp_path / "out"
    with LLMServer(responder=responder) as server:
        done = flowkit(
            tmp_path, "--input", str(source), "--languages", "Klingon,French", "--output", str(out),
            "--rpm", "6000", "--max-attempts", "1",
            OPENAI_BASE_URL=server.base_url,
            OPENAI_API_KEY="test-key",
        )  # fmt: skip
    assert done.returncode == 1
    assert "saved French" in done.stdout
    assert "failed Klingon: LLMServerError" in done.stderr
    assert [p.name for p in out.iterdir()] == ["notes.French.md"]
