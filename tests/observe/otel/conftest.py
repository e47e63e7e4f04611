"""A real tracing backend for the export tests: Arize Phoenix, started once per test session
on a free local port, and read back through its own REST API.

Phoenix runs from the interpreter ``FLOWKIT_PHOENIX_PYTHON`` names (CI gives it a
virtual environment of its own: ``pip install 'flowkit[phoenix]'``), else from this one when
it has the ``phoenix`` package. Without either the Phoenix tests are skipped, except under CI,
where they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]

# Phoenix's gRPC receiver binds every interface; these tests speak OTLP/HTTP only, so the
# launcher keeps gRPC on the loopback address too.
LAUNCH = """
import runpy, sys
import grpc.aio

_server = grpc.aio.server


def server(*args, **kwargs):
    s = _server(*args, **kwargs)
    add = s.add_insecure_port
    s.add_insecure_port = lambda address: add(address.replace("[::]", "127.0.0.1"))
    return s


grpc.aio.server = server
sys.argv = ["phoenix", "serve"]
runpy.run_module("phoenix.server.main", run_name="__main__")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def phoenix_python() -> str | None:
    named = os.environ.get("FLOWKIT_PHOENIX_PYTHON")
    if named:
        return named
    local = ROOT / ".venv-phoenix" / "bin" / "python"
    if local.exists():
        return str(local)
    if importlib.util.find_spec("phoenix") is not None:
        return sys.executable
    return None


class Phoenix:
    """A running Phoenix: ``url`` takes OTLP/HTTP at ``/v1/traces`` and serves its API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as reply:
            return json.loads(reply.read())

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span Phoenix stored for ``project``, through its REST API."""
        out: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = self.get(f"/v1/projects/{project}/spans?limit=1000{cursor}")
            out += page["data"]
            if not page.get("next_cursor"):
                return out
            cursor = f"&cursor={page['next_cursor']}"

    def wait_for(self, project: str, count: int, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """The project's spans once Phoenix has stored ``count`` of them (it ingests in the
        background), or what it has when ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        spans: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                spans = self.spans(project)
            except urllib.error.HTTPError as exc:  # the project appears with its first span
                if exc.code != 404:
                    raise
            if len(spans) >= count:
                return spans
            time.sleep(0.2)
        return spans


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    python = phoenix_python()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail("Phoenix is not installed: pip install 'flowkit[phoenix]'")
        pytest.skip("Phoenix is not installed (pip install 'flowkit[phoenix]')")
    work = tmp_path_factory.mktemp("phoenix")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))},
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (work / "phoenix.log").open("w")
    proc = subprocess.Popen(
        [python, "-c", LAUNCH], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"Phoenix did not start:\n{(work / 'phoenix.log').read_text()[-3000:]}")
            time.sleep(0.25)
        yield Phoenix(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
