"""``python -m nodes.llm.testing.server`` as a real subprocess."""

from __future__ import annotations

import select
import signal
import subprocess
import sys

import pytest
from openai import OpenAI, RateLimitError

COMMAND = [sys.executable, "-m", "nodes.llm.testing.server"]


def test_help_exits_zero() -> None:
    done = subprocess.run([*COMMAND, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--latency-ms" in done.stdout and "--fail-rate-429" in done.stdout


def test_invalid_settings_are_a_usage_error() -> None:
    done = subprocess.run(
        [*COMMAND, "--port", "0", "--fail-rate-429", "2"], capture_output=True, timeout=60
    )
    assert done.returncode == 2


def test_serves_until_interrupted() -> None:
    process = subprocess.Popen(
        [*COMMAND, "--port", "0", "--fail-rate-429", "1", "--model", "cli-model"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        readable, _, _ = select.select([process.stdout], [], [], 60)
        assert readable, "the server printed no URL"
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = OpenAI(base_url=base_url, api_key="test", max_retries=0)
        assert [m.id for m in client.models.list()] == ["cli-model"]
        with pytest.raises(RateLimitError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    finally:
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=30)
        process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()
    assert returncode == 0
