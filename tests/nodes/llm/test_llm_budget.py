"""LLM calls priced from the settings' price table: their cost in the run's usage, charged
to a cost budget that stops the run; and LLM nodes in the cache, keyed on their model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import flowkit as fk
from nodes.llm import LLMSettings, ParallelLLMNode
from nodes.llm.testing import LLMServer
from nodes.llm.testing.completions import default_responder, usage

PRICE = (2.0, 8.0)  # dollars per million prompt, completion tokens


def server_settings(server: LLMServer, **overrides: Any) -> LLMSettings:
    base: dict[str, Any] = {
        "provider": "openai",
        "base_url": server.base_url,
        "api_key": "test",
        "model": "m1",
        "prices": {"m1": PRICE},
    }
    return LLMSettings(**{**base, **overrides})


class Ask(ParallelLLMNode):
    async def prep_async(self, shared: dict[str, Any]) -> list[str]:
        return shared["prompts"]

    async def exec_async(self, prompt: str) -> str:
        return await self.llm.chat(prompt, max_tokens=50)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, answers: list[Any]) -> None:
        shared["answers"] = answers


def expected_cost(prompt: str, model: str = "m1") -> float:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 50}
    counts = usage(body, default_responder(body))
    return (counts["prompt_tokens"] * PRICE[0] + counts["completion_tokens"] * PRICE[1]) / 1e6


def test_each_call_records_its_cost_from_the_price_table(llm_server: LLMServer) -> None:
    prompts = [f"question {i}" for i in range(5)]
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=2)})
    runner.run(Ask(settings=server_settings(llm_server)), {"prompts": prompts})
    usage_ = runner.last_run.nodes["Ask"].usage  # type: ignore[union-attr]
    assert usage_["cost"] == pytest.approx(sum(expected_cost(p) for p in prompts))


@pytest.mark.llm_server(latency_ms=20)
def test_a_cost_budget_stops_admitting_calls_and_those_in_flight_finish(
    llm_server: LLMServer,
) -> None:
    prompts = [f"question {i}" for i in range(40)]
    per_call = expected_cost(prompts[0])
    cap = 5.5 * per_call
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=2, max_cost=cap)})
    with pytest.raises(fk.BudgetSpentError, match="budget llm: max_cost"):
        runner.run(Ask(settings=server_settings(llm_server)), {"prompts": prompts})
    info = runner.last_run
    assert info is not None and info.status == "budget"
    stats = info.budgets["llm"]
    served = llm_server.stats.requests
    assert all(r.status == 200 for r in served)  # every admitted call finished
    assert len(served) == stats.calls == info.limiters["llm"].calls
    # spent after the sixth reply; the call in flight beside it may finish too, no more
    assert 6 <= stats.calls <= 7 and stats.cost >= cap
    assert stats.cost == pytest.approx(info.nodes["Ask"].usage["cost"])


def test_an_unpriced_model_under_a_cost_budget_is_said_once(llm_server: LLMServer) -> None:
    settings = server_settings(llm_server, model="unpriced-model")
    runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=2, max_cost=1.0)})
    with pytest.warns(fk.FlowkitWarning, match="'unpriced-model' has no price") as said:
        runner.run(Ask(settings=settings), {"prompts": ["a", "b", "c"]})
    assert len([w for w in said if "unpriced-model" in str(w.message)]) == 1


def test_prices_come_from_flowkit_llm_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWKIT_LLM_PRICES", "gpt-x=1,2; other=0.5,0.5")
    settings = LLMSettings(provider="simulated")
    assert settings.cost("gpt-x", 1_000_000, 500_000) == pytest.approx(2.0)
    assert settings.cost("unknown", 10, 10) is None
    monkeypatch.setenv("FLOWKIT_LLM_PRICES", "gpt-x=one,two")
    with pytest.raises(ValidationError, match="expected MODEL=IN,OUT"):
        LLMSettings(provider="simulated")


def test_an_llm_node_is_cached_by_its_model_and_request_settings(
    llm_server: LLMServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.db"

    def ask(**overrides: Any) -> list[Any]:
        class Cached(Ask):
            cache = True

        shared: dict[str, Any] = {"prompts": ["a", "b"]}
        runner = fk.Runner(limits={"llm": fk.Limit(max_concurrency=2)}, cache=cache)
        runner.run(Cached(settings=server_settings(llm_server, **overrides)), shared)
        return shared["answers"]

    first = ask()
    assert len(llm_server.stats.requests) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ask() == first  # nothing asked again
    assert len(llm_server.stats.requests) == 2
    ask(model="m2")  # another model: asked again
    ask(temperature=0.5)  # other sampling: asked again
    assert len(llm_server.stats.requests) == 6
