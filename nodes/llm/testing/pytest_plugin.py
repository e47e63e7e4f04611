"""Pytest plugin with the ``llm_server`` fixture.

Enable it with ``pytest_plugins = ["nodes.llm.testing.pytest_plugin"]`` in a conftest.
Settings for one test come from the marker, e.g.
``@pytest.mark.llm_server(latency_ms=200, rpm=5)``, or from ``llm_server.configure(...)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nodes.llm.testing.config import ServerConfig
from nodes.llm.testing.llm_server import LLMServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "llm_server(**settings): ServerConfig fields for the llm_server fixture"
    )


@pytest.fixture
def llm_server(request: pytest.FixtureRequest) -> Iterator[LLMServer]:
    """A fresh server on a free port, served from a background thread, for one test."""
    marker = request.node.get_closest_marker("llm_server")
    config = ServerConfig(**marker.kwargs) if marker else ServerConfig()
    with LLMServer(config) as server:
        yield server
