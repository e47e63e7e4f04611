"""Against the local OpenAI-compatible server: faults, the limit seen from the server's side,
every request billed, failed conversations scored 0, and a killed run resumed without
repeating work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flowkit.cli import main
from flows.prompt_opt import PromptOptConfig, load_dummies, optimize_prompt, role_settings
from flows.prompt_opt.cli import PromptOptCommand
from flows.prompt_opt.prompts import enclosed
from nodes.llm import LLMSettings
from nodes.llm.testing import LLMServer, ServerConfig
from nodes.llm.testing.completions import last_user_text, request_digest


def responder(body: dict[str, Any]) -> str:
    """Deterministic replies each role can use: a verdict for the judge, a rewrite between
    markers for the reflector, a short line for the others."""
    digest = request_digest(body)
    if body.get("response_format"):
        score = int(digest[:2], 16) % 5 / 4
        return json.dumps({"score": score, "feedback": f"The assistant should cover {digest}."})
    text = last_user_text(body["messages"])
    blocks = enclosed(text)
    if blocks:
        return f"<<<\n{blocks[0]}\n- Cover {digest}.\n>>>"
    return f"Reply {digest}."


def settings_for(server: LLMServer, **changes: Any) -> dict[str, LLMSettings]:
    base = LLMSettings(
        provider="openai", base_url=server.base_url, api_key="test", backoff_s=0.01, **changes
    )
    return role_settings(base)


CONFIG = PromptOptConfig(budget=150, turns=2, minibatch=2, max_consecutive_failures=100)
pytestmark = pytest.mark.filterwarnings("ignore:validation equals training")


def test_faults_are_retried_and_the_server_never_sees_more_than_the_limit() -> None:
    faults = ServerConfig(latency_ms=20, fail_rate_429=0.15, fail_rate_500=0.15, retry_after_s=0.01)
    with LLMServer(faults, responder=responder) as server:
        result = optimize_prompt(
            train=load_dummies()[:4],
            settings=settings_for(server, max_attempts=8),
            config=CONFIG,
            runner=fk.Runner(limits={"llm": fk.Limit(max_concurrency=3)}),
        )
        stats = server.wait_for(lambda s: s.in_flight == 0)
    assert stats.peak_in_flight == 3
    assert stats.status_counts[429] > 0 and stats.status_counts[500] > 0
    assert stats.status_counts[200] == sum(result.calls.values())
    assert (
        sum(row.retries for row in result.usage)
        == stats.status_counts[429] + stats.status_counts[500]
    )
    assert result.billed == sum(stats.status_counts.values())  # every request, billed
    assert not any(c.errors for c in result.candidates)


def test_a_conversation_that_fails_for_good_scores_zero_and_is_counted(tmp_path: Path) -> None:
    with LLMServer(ServerConfig(fail_rate_500=0.3, seed=2), responder=responder) as server:
        result = optimize_prompt(
            train=load_dummies()[:4],
            settings=settings_for(server, max_attempts=2),
            config=CONFIG,
            output=tmp_path,
            runner=fk.Runner(limits={"llm": fk.Limit(max_concurrency=3)}),
        )
        stats = server.wait_for(lambda s: s.in_flight == 0)
    runs = [json.loads(line) for line in (tmp_path / "evaluations.jsonl").read_text().splitlines()]
    failed = [r for r in runs if r["error"]]
    assert failed and all("HTTP 500" in r["error"] and r["value"] == 0.0 for r in failed)
    per = {c.id: c.failures for c in result.candidates}
    for cid in per:
        assert per[cid] == sum(r["candidate"] == cid for r in failed)
    talk = [row for row in result.usage if row.role != "reflect"]  # a rewrite can fail too
    assert sum(row.failed for row in talk) == len(failed)
    assert result.billed == sum(stats.status_counts.values())


CLI = (
    "import sys; from flowkit.cli import main; "
    "from flows.prompt_opt.cli import PromptOptCommand; "
    "sys.exit(main(sys.argv[1:], commands=[PromptOptCommand()]))"
)


def cli(cwd: Path, server: LLMServer, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FLOWKIT_"))}
    env.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="test")
    command = [
        *("run", "prompt-opt", "--no-progress", "--provider", "openai", "--turns", "2"),
        *("--budget", "200", "--dummies", str(cwd / "dummies.json"), "--output", "out"),
    ]
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *command, *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_killed_run_resumed_repeats_only_what_was_in_flight(tmp_path: Path) -> None:
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    dummies = [d.model_dump(mode="json") for d in load_dummies()[:4]]
    for folder in (whole, broken):
        folder.mkdir()
        (folder / "dummies.json").write_text(json.dumps(dummies))
    with LLMServer(ServerConfig(latency_ms=20), responder=responder) as server:
        proc = cli(whole, server)
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
        total = server.stats.status_counts[200]
        server.reset()

        proc = cli(broken, server, "--run-id", "r1")
        server.wait_for(lambda s: s.status_counts.get(200, 0) >= total // 2, timeout=60)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = server.wait_for(lambda s: s.in_flight == 0).status_counts[200]
        server.reset()

        proc = cli(broken, server, "--resume", "r1")
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
        again = server.stats.status_counts[200]
    # Calls finished before the kill are reused; at most the 3 in flight and those that
    # ended in the writer's last 20 ms run again.
    assert total - finished <= again <= total - finished + 6, (total, finished, again)
    assert (broken / "out" / "candidates.jsonl").read_text() == (
        whole / "out" / "candidates.jsonl"
    ).read_text()


def test_each_role_can_have_its_own_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with (
        LLMServer(responder=responder) as talk,
        LLMServer(responder=responder) as judge,
    ):
        status = main(
            [
                *("run", "prompt-opt", "--no-progress", "--provider", "openai"),
                *("--base-url", talk.base_url, "--base-url", f"judge={judge.base_url}"),
                *("--model", "judge=strict-judge", "--budget", "120", "--turns", "1"),
                *("--output", "out"),
            ],
            commands=[PromptOptCommand()],
        )
        judged = [r.body["model"] for r in judge.stats.requests]
        talked = {r.body["model"] for r in talk.stats.requests}
    assert status == 0
    assert judged and set(judged) == {"strict-judge"}
    assert "strict-judge" not in talked
