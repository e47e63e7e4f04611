from __future__ import annotations

import os
from collections.abc import Callable

import pytest

pytest_plugins = ["nodes.llm.testing.pytest_plugin"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def alive() -> Callable[[int], bool]:
    """Whether a process id still names a running (or unreaped) process."""
    return _alive
