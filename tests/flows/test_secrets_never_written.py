"""No byte a run writes or prints holds a configured API key or a base URL's password.

Real flows run against local servers: the fake OpenAI server answers one role, another
server refuses every call with a 401 that echoes the key and the Authorization header it got
(as careless proxies do), and a third endpoint is not listening at all. Then every file
under the test's folder (stores with their WAL, exports, outputs, reports) and everything
printed is searched for the planted key and password.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flows.translation import translate_document
from nodes.llm import LLMSettings
from nodes.llm.testing import LLMServer

KEY = "fkplanted7Q2xV9kLm4"  # no well-known key shape: found only as a configured secret
PASSWORD = "pwplanted8Rt3Zq"
CLI = (
    "import sys; from flowkit.cli import main; "
    "from flows.translation.cli import TranslationCommand; "
    "from flows.medmcqa.cli import MedMCQACommand; "
    "sys.exit(main(sys.argv[1:], commands=[TranslationCommand(), MedMCQACommand()]))"
)


class Echo(BaseHTTPRequestHandler):
    """Refuses every call with a 401 whose body repeats the credentials it was sent."""

    seen: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        auth = self.headers.get("authorization", "")
        Echo.seen.append(auth)
        body = {
            "error": {
                "message": f"Incorrect API key provided: {auth.removeprefix('Bearer ')}. "
                f"You sent: {auth}",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        }
        data = json.dumps(body).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Echo.seen = []
    try:
        yield f"http://user:{PASSWORD}@127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flowkit(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FLOWKIT_"))}
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**clean, **env},
        cwd=cwd,
    )


def leaks(folder: Path, printed: list[str]) -> list[str]:
    """Where the key or the password appears: files under ``folder``, or printed text."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {s}" for s in (KEY, PASSWORD) if s.encode() in data]
    for i, text in enumerate(printed):
        found += [f"output {i}: {s}" for s in (KEY, PASSWORD) if s in text]
    return found


def test_no_key_or_password_in_anything_the_flows_write_or_print(tmp_path: Path, echo: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    doc = work / "doc.md"
    doc.write_text("# Title\n\nSome text to translate.\n")
    printed: list[str] = []

    def run(*args: str, expect: int, **env: str) -> None:
        done = flowkit(work, *args, **env)
        printed.extend((done.stdout, done.stderr))
        assert done.returncode == expect, done.stderr

    # translation: every call refused with the key echoed; the run is stored and reported
    run(
        *("run", "translation", "--no-progress", "--provider", "openai", "--model", "m"),
        *("--input", str(doc), "--languages", "French", "--output", "out-t"),
        *("--run-id", "t1", "--report", "report-t", "--max-attempts", "1"),
        expect=1,
        OPENAI_API_KEY=KEY,
        OPENAI_BASE_URL=echo,
    )
    assert any("failed French: " in text for text in printed)
    # an endpoint that is not listening: "cannot reach ..." names it, without the password
    run(
        *("run", "translation", "--no-progress", "--provider", "openai", "--model", "m"),
        *("--input", str(doc), "--languages", "German", "--output", "out-t"),
        *("--run-id", "t2", "--max-attempts", "1"),
        expect=1,
        OPENAI_API_KEY=KEY,
        OPENAI_BASE_URL=f"http://user:{PASSWORD}@127.0.0.1:{closed_port()}/v1",
    )
    assert any("cannot reach http://127.0.0.1:" in text for text in printed)
    # medmcqa: the local model answers, the remote one refuses with the key echoed
    with LLMServer() as local:
        run(
            *("run", "medmcqa", "--no-progress", "--provider", "openai", "--embedder", "hashed"),
            *("--local-model", "m", "--remote-model", "m", "--limit", "2"),
            *("--local-base-url", local.base_url.replace("://", f"://user:{PASSWORD}@")),
            *("--remote-base-url", echo, "--scenarios", "1,4,3.2", "--epsilons", "1"),
            *("--output", "out-m", "--run-id", "m1"),
            expect=1,
            FLOWKIT_LOCAL_API_KEY=KEY,
            FLOWKIT_REMOTE_API_KEY=KEY,
        )
        assert local.stats.status_counts.get(200, 0) > 0
    results = (work / "out-m" / "results.jsonl").read_text()
    cells = [json.loads(line) for line in results.splitlines()]
    assert any(c["error"] and "Incorrect API key provided: [REDACTED]" in c["error"] for c in cells)
    # what the store holds, exported
    for run_id in ("t1", "t2", "m1"):
        run("export", run_id, "--output", f"{run_id}.jsonl", expect=0)
        run("export", run_id, "--format", "csv", expect=0)
    run("runs", expect=0)
    assert Echo.seen and all(seen == f"Bearer {KEY}" for seen in Echo.seen)  # no Basic auth
    assert leaks(tmp_path, printed) == []


class Calls(fk.AsyncParallelBatchNode):
    """Calls the LLM once per item; failures are collected as error records."""

    on_error = "collect"

    def __init__(self, settings: LLMSettings) -> None:
        super().__init__()
        from nodes.llm import LLMClient

        self.llm = LLMClient(settings, name="calls")

    async def prep_async(self, shared):
        return ["one", "two"]

    async def exec_async(self, item: str) -> str:
        return await self.llm.chat(item)


def test_a_key_given_in_settings_is_a_secret_without_any_environment_variable(
    tmp_path: Path, echo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "FLOWKIT_")):
            monkeypatch.delenv(name)
    settings = LLMSettings(provider="openai", api_key=KEY, base_url=echo, max_attempts=1)
    runner = fk.Runner(store=tmp_path / "runs.db", report=tmp_path / "report", limits={})
    runner.run(Calls(settings), {})
    assert runner.last_run is not None
    errors = runner.last_run.errors
    assert len(errors) == 2 and "Incorrect API key provided: [REDACTED]" in errors[0].message
    assert all(KEY not in e.message + e.traceback for e in errors)
    result = translate_document(
        _doc(tmp_path),
        ["French"],
        tmp_path / "out",
        settings=settings,
        runner=fk.Runner(store=tmp_path / "runs.db", limits={"llm": fk.Limit(max_concurrency=2)}),
    )
    assert "French" in result.failed and KEY not in result.failed["French"]
    assert leaks(tmp_path, []) == []


def _doc(folder: Path) -> Path:
    path = folder / "doc.md"
    path.write_text("# Title\n\nText.\n")
    return path
