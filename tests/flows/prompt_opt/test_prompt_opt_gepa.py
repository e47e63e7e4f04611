"""gepa's own engine with flowkit underneath, against the local fault-injecting server:
the limits as the server sees them, the ledger, and a killed run resumed from its journal."""

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
from flowkit.errors import MissingExtraError
from flows.prompt_opt import SEED_PROMPT, DummiesTask, load_dummies, role_settings
from nodes.llm import LLMSettings
from nodes.llm.testing import LLMServer, ServerConfig
from nodes.llm.testing.completions import request_digest, usage

pytest.importorskip("gepa")
from flows.prompt_opt.gepa_adapter import run_gepa


def responder(body: dict[str, Any]) -> str:
    """A verdict for the judge, a fenced instruction for gepa's reflector, a line otherwise."""
    digest = request_digest(body)
    if body.get("response_format"):
        score = int(digest[:2], 16) % 5 / 4
        return json.dumps({"score": score, "feedback": f"The assistant should cover {digest}."})
    text = str(body["messages"][-1]["content"])
    if "```" in text:
        return f"```\nYou are the front desk. Cover {digest}.\n```"
    return f"Reply {digest}."


def settings_for(server: LLMServer, **changes: Any) -> dict[str, LLMSettings]:
    base = LLMSettings(
        provider="openai", base_url=server.base_url, api_key="test", backoff_s=0.01, **changes
    )
    return dict(role_settings(base))


def small_run(server: LLMServer, runner: fk.Runner, **options: Any) -> Any:
    settings = settings_for(server, max_attempts=8)
    dummies = load_dummies()[:3]
    options.setdefault("max_metric_calls", 15)
    return run_gepa(
        DummiesTask(settings, turns=1),
        {"system_prompt": SEED_PROMPT},
        dummies,
        dummies,
        reflect=settings["reflect"],
        runner=runner,
        seed=0,
        **options,
    )


def test_every_gepa_call_takes_flowkits_limiter_and_lands_in_the_ledger() -> None:
    faults = ServerConfig(latency_ms=10, fail_rate_429=0.1, fail_rate_500=0.1, retry_after_s=0.01)
    with LLMServer(faults, responder=responder) as server:
        run = small_run(
            server, fk.Runner(limits={"llm": fk.Limit(max_concurrency=2)}, progress=False)
        )
        stats = server.wait_for(lambda s: s.in_flight == 0)
    assert stats.peak_in_flight == 2
    assert stats.status_counts[429] > 0 and stats.status_counts[500] > 0
    bills = run.bills
    assert set(bills) == {"assistant", "user", "judge", "reflect"}
    assert bills["reflect"].answered >= 1
    assert sum(b.attempts for b in bills.values()) == sum(stats.status_counts.values())
    assert sum(b.answered for b in bills.values()) == stats.status_counts[200]
    answered = [r.body for r in stats.requests if r.status == 200]
    assert sum(b.prompt_tokens for b in bills.values()) == sum(
        usage(body, "")["prompt_tokens"] for body in answered
    )  # the ledger's tokens are the server's
    assert len(run.result.candidates) >= 2
    rows = {row["role"]: row for row in run.usage({"reflect": (1.0, 2.0)})}
    assert rows["reflect"]["cost"] > 0 and rows["judge"]["cost"] is None


def test_an_rpm_limit_keeps_gepa_under_the_servers_rate() -> None:
    limited = ServerConfig(latency_ms=5, rpm=12, rpm_window_s=0.5)
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=4, rpm=1200)}, progress=False)
    with LLMServer(limited, responder=responder) as server:
        small_run(server, runner, max_metric_calls=9)
        stats = server.wait_for(lambda s: s.in_flight == 0)
    assert stats.status_counts[200] > 12
    assert stats.status_counts.get(429, 0) == 0  # the server never had to refuse


SCRIPT = """
import json, sys
import flowkit as fk
from flows.prompt_opt import SEED_PROMPT, DummiesTask, load_dummies, role_settings
from flows.prompt_opt.gepa_adapter import run_gepa
from nodes.llm import LLMSettings
base = LLMSettings(provider="openai", api_key="test", backoff_s=0.01)
settings = role_settings(base)
dummies = load_dummies()[:3]
run = run_gepa(
    DummiesTask(settings, turns=1), {"system_prompt": SEED_PROMPT}, dummies, dummies,
    reflect=settings["reflect"], runner=fk.Runner(limits={"llm": fk.Limit(max_concurrency=3)},
    progress=False), journal=sys.argv[1], max_metric_calls=15, seed=0,
)
print(json.dumps({"best": run.result.best_candidate, "replayed": run.replayed}))
"""


def gepa_process(server: LLMServer, journal: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FLOWKIT_"))}
    env.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="test")
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(journal)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_killed_gepa_run_resumes_from_its_journal_paying_only_for_the_calls_in_flight(
    tmp_path: Path,
) -> None:
    with LLMServer(ServerConfig(latency_ms=15), responder=responder) as server:
        whole = gepa_process(server, tmp_path / "whole.jsonl")
        out, err = whole.communicate(timeout=120)
        assert whole.returncode == 0, err
        total = server.stats.status_counts[200]
        server.reset()

        broken = gepa_process(server, tmp_path / "broken.jsonl")
        server.wait_for(lambda s: s.status_counts.get(200, 0) >= total // 2, timeout=60)
        broken.send_signal(signal.SIGKILL)
        broken.wait()
        finished = server.wait_for(lambda s: s.in_flight == 0).status_counts[200]
        server.reset()

        resumed = gepa_process(server, tmp_path / "broken.jsonl")
        again, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        paid = server.stats.status_counts[200]
    # Replies that landed before the kill are replayed; at most the 3 in flight run again.
    assert total - finished <= paid <= total - finished + 3, (total, finished, paid)
    assert json.loads(again)["best"] == json.loads(out)["best"]
    assert json.loads(again)["replayed"] >= finished - 3


def test_without_gepa_the_adapter_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gepa", None)
    with pytest.raises(MissingExtraError, match=r"flowkit\[gepa\]"):
        run_gepa(DummiesTask(), {"system_prompt": "x"}, load_dummies()[:1])
