"""Headless Chromium for the report tests: the binary, its flags, and one call to it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

BROWSER = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
needs_browser = pytest.mark.skipif(
    BROWSER is None,
    reason="no chromium binary on PATH (apt-get install chromium) to open the HTML report",
)


def command(profile: Path, *args: str, height: int = 900) -> list[str]:
    """Chromium, headless and quiet on the network, with its console on stderr, a 1400 px
    wide window and the profile folder ``profile`` (made if missing), then ``args``."""
    assert BROWSER is not None
    profile.mkdir(exist_ok=True)
    return [
        BROWSER,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size=1400,{height}",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={profile}",
        *args,
    ]


def browse(
    profile: Path, *args: str, height: int = 900, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end; what it printed comes back as text."""
    return subprocess.run(
        command(profile, *args, height=height), capture_output=True, text=True, timeout=timeout
    )
