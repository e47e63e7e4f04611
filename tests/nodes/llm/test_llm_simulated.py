"""The simulated provider: deterministic, seeded, and failing exactly like the real path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import flowkit as fk
from nodes.llm import (
    LLMCallError,
    LLMClient,
    LLMRateLimitError,
    LLMServerError,
    LLMSettings,
    LLMTimeoutError,
    Simulation,
)
from nodes.llm import settings as settings_module
from nodes.llm.testing import LLMServer, ServerConfig


def simulated(**simulation: Any) -> LLMSettings:
    return LLMSettings(
        provider="simulated",
        backoff_s=0.001,
        max_attempts=2,
        timeout=0.05,
        simulation=Simulation(latency_s=0, retry_after_s=0, **simulation),
    )


async def test_the_same_request_gets_the_same_text() -> None:
    first = LLMClient(simulated())
    again = LLMClient(simulated())
    assert await first.chat("hello") == await again.chat("hello")
    assert await first.chat("hello") != await first.chat("goodbye")
    assert await first.chat("hello", simulate=lambda: "bonjour") == "bonjour"


async def test_simulated_and_served_replies_match(llm_server: LLMServer) -> None:
    served = LLMSettings(provider="openai", base_url=llm_server.base_url, api_key="t")
    assert await LLMClient(simulated()).chat("hi") == await LLMClient(served).chat("hi")


async def outcomes(settings: LLMSettings, count: int) -> list[str]:
    client = LLMClient(settings)
    seen = []
    for i in range(count):
        try:
            await client.chat(f"prompt {i}")
            seen.append("ok")
        except LLMCallError as exc:
            seen.append(type(exc).__name__)
    return seen


def test_fault_rates_are_seeded_and_roughly_honoured() -> None:
    settings = simulated(seed=7, server_error_rate=0.3, rate_limit_rate=0.2)
    settings = settings.model_copy(update={"max_attempts": 1})
    seen = asyncio.run(outcomes(settings, 400))
    assert asyncio.run(outcomes(settings, 400)) == seen  # a second run repeats the first
    assert 0.2 < seen.count("LLMServerError") / 400 < 0.4
    assert 0.12 < seen.count("LLMRateLimitError") / 400 < 0.28
    reseeded = settings.model_copy(
        update={"simulation": settings.simulation.model_copy(update={"seed": 8})}
    )
    assert asyncio.run(outcomes(reseeded, 400)) != seen


async def test_a_fault_on_one_try_is_retried() -> None:
    settings = simulated(seed=3, server_error_rate=0.5).model_copy(update={"max_attempts": 8})
    assert await outcomes(settings, 50) == ["ok"] * 50


@contextlib.contextmanager
def real_server(**config: Any) -> Iterator[LLMSettings]:
    with LLMServer(ServerConfig(**config)) as server:
        yield LLMSettings(
            provider="openai",
            base_url=server.base_url,
            api_key="test",
            backoff_s=0.001,
            max_attempts=2,
            timeout=0.05,
        )


@pytest.mark.parametrize(
    ("simulation", "served", "error"),
    [
        ({"rate_limit_rate": 1}, {"fail_rate_429": 1, "retry_after_s": 0}, LLMRateLimitError),
        ({"server_error_rate": 1}, {"fail_rate_500": 1}, LLMServerError),
        ({"timeout_rate": 1}, {"stall_rate": 1}, LLMTimeoutError),
    ],
    ids=["rate-limit", "server-error", "timeout"],
)
def test_simulated_faults_fail_like_real_ones(
    simulation: dict[str, Any], served: dict[str, Any], error: type[LLMCallError]
) -> None:
    class Ask(fk.AsyncNode):
        def __init__(self, settings: LLMSettings) -> None:
            super().__init__(on_error="collect")
            self.client = LLMClient(settings, name="Ask")

        async def exec_async(self, _: Any) -> str:
            return await self.client.chat("hi")

    records = []
    with real_server(**served) as real:
        for settings in (simulated(**simulation), real):
            runner = fk.Runner()
            runner.run(Ask(settings), {})
            assert runner.last_run is not None
            records.append(runner.last_run.errors[0])
    assert {r.error_type for r in records} == {error.__name__}
    assert all("gave up after 2 attempts" in r.message for r in records)


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FLOWKIT_LLM_PROVIDER", "FLOWKIT_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings_module, "_noticed", False)


@pytest.mark.usefixtures("bare_env")
def test_no_key_and_no_base_url_falls_back_to_simulated_with_one_notice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="nodes.llm"):
        assert LLMSettings().provider == "simulated"
        assert LLMSettings(model="other").provider == "simulated"
    (notice,) = caplog.records
    assert "simulated provider" in notice.getMessage()


@pytest.mark.usefixtures("bare_env")
def test_the_environment_chooses_the_openai_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("FLOWKIT_LLM_MODEL", "gpt-env")
    settings = LLMSettings()
    assert settings.provider == "openai" and settings.model == "gpt-env"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-from-env"
    assert "sk-from-env" not in repr(settings)
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:9/v1")
    assert LLMSettings().provider == "openai"
