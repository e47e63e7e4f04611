"""The experiment against two local OpenAI-compatible servers (local and remote models):
injected faults, limits seen from the servers' side, and a killed run resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flowkit as fk
from flows.medmcqa import Experiment, QuestionFile, SimulatedModels, build_flow, sample_path
from flows.medmcqa.data import Question
from flows.medmcqa.run import corpus_counts, hashed_embedder
from nodes.llm import LLMSettings
from nodes.llm.testing import LLMServer, ServerConfig


def http_settings(server: LLMServer, role: str) -> LLMSettings:
    return LLMSettings(
        provider="openai",
        base_url=server.base_url,
        api_key="test",
        model=role,
        limiter=role,
        backoff_s=0.01,
        max_backoff_s=0.05,
    )


@contextmanager
def servers(
    questions: list[Question], config: ServerConfig
) -> Iterator[tuple[LLMServer, LLMServer]]:
    sim = SimulatedModels()
    with (
        LLMServer(config, responder=sim.responder("local", questions)) as local,
        LLMServer(
            config.model_copy(update={"seed": config.seed + 1}),
            responder=sim.responder("remote", questions),
        ) as remote,
    ):
        yield local, remote


def run_flow(
    local: LLMServer,
    remote: LLMServer,
    questions: list[Question],
    out: Path,
    limits: tuple[int, int],
    question_concurrency: int = 64,
) -> dict[str, Any]:
    experiment = Experiment(
        http_settings(local, "local"),
        http_settings(remote, "remote"),
        hashed_embedder(questions),
        corpus=corpus_counts(questions),
    )
    runner = fk.Runner(
        limits={
            "local": fk.Limit(max_concurrency=limits[0]),
            "remote": fk.Limit(max_concurrency=limits[1]),
        }
    )
    shared: dict[str, Any] = {"questions": questions, "output": out}
    runner.run(build_flow(experiment, question_concurrency=question_concurrency), shared)
    return shared


def test_with_429s_and_500s_every_cell_ends_and_no_limit_is_exceeded(tmp_path: Path) -> None:
    questions = list(QuestionFile(sample_path(), limit=6))
    config = ServerConfig(
        latency_ms=15, fail_rate_429=0.15, fail_rate_500=0.1, retry_after_s=0.02, seed=3
    )
    with servers(questions, config) as (local, remote):
        shared = run_flow(local, remote, questions, tmp_path, limits=(3, 5))
        local_stats, remote_stats = local.stats, remote.stats
    cells = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(cells) == 6 * 12
    for cell in cells:
        assert (cell["error"] is None and cell["answer"] in ("A", "B", "C", "D")) or (
            cell["error"] and cell["answer"] is None
        )
    assert shared["table"].failed == sum(1 for c in cells if c["error"])
    # faults were injected on both sides, and retried
    for stats in (local_stats, remote_stats):
        assert stats.status_counts.get(429, 0) > 0 and stats.status_counts.get(500, 0) > 0
    # every question, scenario, mechanism and ε share one budget per provider
    assert local_stats.peak_in_flight == 3
    assert remote_stats.peak_in_flight == 5


def bodies(*stats: Any, status: int | None = 200) -> Counter[str]:
    return Counter(
        json.dumps(r.body.get("messages"), sort_keys=True)
        for s in stats
        for r in s.requests
        if status is None or r.status == status
    )


def flowkit_run(
    cwd: Path, local: LLMServer, remote: LLMServer, *extra: str
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FLOWKIT_"))}
    env.update(FLOWKIT_LOCAL_API_KEY="test", FLOWKIT_REMOTE_API_KEY="test")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowkit.cli",
            "run",
            "medmcqa",
            "--limit",
            "16",
            "--provider",
            "openai",
            "--embedder",
            "hashed",
            "--local-model",
            "local",
            "--local-base-url",
            local.base_url,
            "--remote-model",
            "remote",
            "--remote-base-url",
            remote.base_url,
            "--local-max-concurrency",
            "4",
            "--remote-max-concurrency",
            "4",
            "--question-concurrency",
            "2",
            "--store",
            "runs.db",
            "--output",
            "out",
            "--no-progress",
            *extra,
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_killed_run_resumed_gives_the_same_table_and_redoes_only_what_was_in_flight(
    tmp_path: Path,
) -> None:
    questions = list(QuestionFile(sample_path(), limit=16))
    with servers(questions, ServerConfig(latency_ms=20)) as (local, remote):
        reference = run_flow(local, remote, questions, tmp_path / "ref", limits=(4, 4))
        everything = bodies(local.stats, remote.stats)
        local.reset()
        remote.reset()

        results = tmp_path / "out" / "results.jsonl"
        first = flowkit_run(tmp_path, local, remote, "--run-id", "medmcqa-killed")
        while first.poll() is None and (
            not results.exists() or len(results.read_text().splitlines()) < 60
        ):
            time.sleep(0.01)
        assert first.poll() is None, first.communicate()
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = len(results.read_text().splitlines())
        answered_before = bodies(local.stats, remote.stats)
        local.reset()
        remote.reset()

        resumed = flowkit_run(tmp_path, local, remote, "--resume", "medmcqa-killed")
        out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        answered_after = bodies(local.stats, remote.stats)

    assert killed_at < 16 * 12
    resumed_csv = (tmp_path / "out" / "accuracy.csv").read_text()
    assert resumed_csv == reference["table"].to_csv()
    assert "16 questions, 192 cells (0 failed)" in out
    # together the two runs asked exactly what one uninterrupted run asks ...
    assert set(answered_before) | set(answered_after) == set(everything)
    # ... and the resumed run repeated only calls of cells that were in flight: at most two
    # questions (--question-concurrency 2) of 12 cells and 3 paraphrase items, 2 calls each
    repeated = sum((answered_before & answered_after).values())
    assert repeated <= 2 * (12 + 3) * 2
    assert sum(answered_after.values()) < sum(everything.values()) - 60
