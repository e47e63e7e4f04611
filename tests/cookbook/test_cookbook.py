"""Every cookbook chapter runs, offline, as a reader would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHAPTERS = sorted((Path(__file__).parents[2] / "cookbook").glob("[0-9][0-9]_*.py"))
SAYS = {
    "12_timeouts": ["Fetch: 12 items, 1 try timed out after 0.5 s, 1 retried, 0 failed"],
    "13_budget": ["stopped: Summarize stopped: budget llm: max_cost $0.10 reached", "status done"],
    "14_streaming": ["8 line(s) in the file so far", "when each line was written"],
    "15_cache": ["31 tickets with gpt-4o-mini: 30 from the cache, 1 LLM calls"],
    "16_auto_rate_limits": ["learned: auto rpm: told 2,400, pacing 2,352"],
}
"""What a chapter must print, beyond running: the behaviour it shows."""


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs(chapter: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FLOWKIT_LLM_"))}
    done = subprocess.run(
        [sys.executable, str(chapter)], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    for said in SAYS.get(chapter.stem, []):
        assert said in done.stdout
